"""Host side of mpseal: receiver, storage, API, web page, modem drivers, CLI."""
