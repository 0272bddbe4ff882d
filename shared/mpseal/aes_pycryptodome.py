# CPython side of the crypto seam (see aes.py). Never copied to a board.
from Crypto.Cipher import AES


def cbc_encrypt(key, iv, data):
    return AES.new(key, AES.MODE_CBC, iv).encrypt(data)


def cbc_decrypt(key, iv, data):
    return AES.new(key, AES.MODE_CBC, iv).decrypt(data)


def ecb_encrypt_block(key, block):
    return AES.new(key, AES.MODE_ECB).encrypt(block)
