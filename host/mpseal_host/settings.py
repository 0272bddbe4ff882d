"""Where the receiver's database is and how the receiver runs, from one
config file, the environment and the command line (in that order of
precedence, lowest first); see docs/operations.md.

Config file (TOML), the first that exists of:
  $MPSEAL_CONFIG, ./mpseal.toml, $XDG_CONFIG_HOME/mpseal/mpseal.toml
  (~/.config/mpseal/mpseal.toml), /etc/mpseal/mpseal.toml

    db = "/var/lib/mpseal/mpseal.sqlite"     # or a postgresql:// URL where supported
    [receive]
    udp = "0.0.0.0:4740"
    http = "0.0.0.0:8740"
    api = "127.0.0.1:8741"                   # API + page; any other address needs a token
    keep_days = 90                           # readings older than this are deleted
    mqtt = "mqtts://broker.lan"              # and mqtt_username, mqtt_password_file, ... (docs/integrations.md)

Database, the first that is set of: --db, $MPSEAL_DB, `db` in the config
file, the data directory ($XDG_DATA_HOME/mpseal/mpseal.sqlite, i.e.
~/.local/share/mpseal/mpseal.sqlite), so every command finds the same
database whatever folder it runs in.
"""
import os

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from mpseal_host.errors import MpsealError

CONFIG_ENV = "MPSEAL_CONFIG"
DB_ENV = "MPSEAL_DB"
DB_FILE = "mpseal.sqlite"
# key -> type, for the file's top level and its [receive] table
TOP_KEYS = {"db": str, "receive": dict}
RECEIVE_KEYS = {"udp": str, "http": str, "api": str, "keep_days": int}
# `mpseal receive --mqtt ...` (docs/integrations.md); never a password itself
RECEIVE_KEYS.update({key: str for key in ("mqtt", "mqtt_username", "mqtt_password_file", "mqtt_ca_file",
                                          "mqtt_cert_file", "mqtt_key_file", "mqtt_prefix", "mqtt_discovery_prefix")})


class ConfigError(MpsealError):
    """The config file is unreadable or holds a key or value mpseal does not take."""


def config_candidates(environ=None, cwd=None):
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    if environ.get(CONFIG_ENV):
        return [environ[CONFIG_ENV]]  # named explicitly: it must exist
    return [os.path.join(cwd or os.getcwd(), "mpseal.toml"), os.path.join(xdg, "mpseal", "mpseal.toml"),
            "/etc/mpseal/mpseal.toml"]


def data_dir(environ=None):
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "mpseal")


def _check(table, allowed, where, path):
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError("%s: unknown key %s%s (known: %s)" % (path, where, key, ", ".join(sorted(allowed))))
        kind = allowed[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError("%s: %s%s must be %s, not %r" % (path, where, key, kind.__name__, value))


def load_config(environ=None, cwd=None):
    """(config dict, path) of the first config file found, or ({}, None)."""
    environ = os.environ if environ is None else environ
    for path in config_candidates(environ, cwd):
        try:
            with open(path, "rb") as f:
                config = tomllib.load(f)
        except FileNotFoundError:
            if environ.get(CONFIG_ENV):
                raise ConfigError("%s (from $%s) does not exist" % (path, CONFIG_ENV))
            continue
        except IsADirectoryError:
            raise ConfigError("%s is a folder, not a config file" % path)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("%s is not valid TOML: %s" % (path, exc))
        except OSError as exc:
            raise ConfigError("cannot read %s: %s" % (path, exc.strerror or exc))
        _check(config, TOP_KEYS, "", path)
        _check(config.get("receive", {}), RECEIVE_KEYS, "receive.", path)
        return config, path
    return {}, None


def database_location(flag=None, environ=None, cwd=None):
    """(location, where it came from) by the precedence above."""
    environ = os.environ if environ is None else environ
    if flag:
        return flag, "--db"
    if environ.get(DB_ENV):
        return environ[DB_ENV], "$" + DB_ENV
    config, path = load_config(environ, cwd)
    if config.get("db"):
        return config["db"], path
    return os.path.join(data_dir(environ), DB_FILE), "the data directory"


def receive_settings(environ=None, cwd=None):
    """The config file's [receive] table ({} without a file)."""
    return load_config(environ, cwd)[0].get("receive", {})
