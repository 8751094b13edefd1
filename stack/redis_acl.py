"""The local Redis's ACL users (`ems up`): the operator and the HTTP service, from settings.

Both users exist in every mode, so clients always send the same credentials (the root Feast yaml's
`username=`/`password=` for the operator, EMS_REDIS_SERVICE_* for `ems serve`). A client without
credentials is refused in both modes (`NOAUTH Authentication required`). Without `ems up --auth` the
`default` user also answers the legacy `AUTH <password>` with the operator's or the service's password
(requirepass-style, for clients that send no user name; Redis refuses that form while `default` has no
password). With `ems up --auth` the `default` user is disabled: only the named users get in.

The users are written to an ACL file (`--aclfile`) readable by its owner only, with SHA-256 password
hashes, never the passwords; redis-server loads it at start. `apply()` sets the same users on a running
server (`ACL SETUSER`; the caller then saves them with `ACL SAVE`), so a change of mode or password
needs no restart, and a Redis started before ACL users existed (open to anyone) gets them in place.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from core.settings import Settings
from stack.process import ServiceError

# Every key and channel, every command: Feast materializes, `ems` migrates and benches.
OPERATOR_RULES = "~* &* +@all"
# Reads only (HMGET of the online rows, PING, SELECT of its database); no KEYS/SCAN of the keyspace, no writes.
SERVICE_RULES = "~* resetchannels -@all +@read +@connection +select -keys -scan -randomkey -@dangerous"
CLOSED_DEFAULT = "user default off resetpass -@all"


def _user_line(name: str, password: str, rules: str) -> str:
    for label, value in (("user name", name), ("password", password)):
        if not value or any(c.isspace() for c in value):
            raise ServiceError(f"Redis ACL {label} {value!r} must be non-empty and hold no whitespace "
                               "(EMS_REDIS_USERNAME / EMS_REDIS_PASSWORD, EMS_REDIS_SERVICE_*)")
    return f"user {name} on #{_digest(password)} {rules}"


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def acl_lines(settings: Settings, auth: bool) -> list[str]:
    """The ACL file's users: the operator (the credentials this process connects with), the service, and
    `default` disabled when `auth`."""
    operator = settings.redis
    if not operator.username or not operator.password:
        raise ServiceError(f"the local Redis needs an operator ACL user: set username= and password= in "
                           f"online_store.connection_string of {settings.feast_yaml} (or EMS_REDIS_USERNAME "
                           "and EMS_REDIS_PASSWORD)")
    if operator.username in ("default", settings.redis_service_username):
        raise ServiceError(f"Redis operator user {operator.username!r} must differ from 'default' and from the "
                           f"service user {settings.redis_service_username!r} (EMS_REDIS_SERVICE_USERNAME)")
    legacy = (f"user default on #{_digest(operator.password)} #{_digest(settings.redis_service_password)} "
              f"{OPERATOR_RULES}")
    return [
        CLOSED_DEFAULT if auth else legacy,
        _user_line(operator.username, operator.password, OPERATOR_RULES),
        _user_line(settings.redis_service_username, settings.redis_service_password, SERVICE_RULES),
    ]


def setuser_args(line: str) -> list[str]:
    """`user NAME RULES...` of the ACL file as `ACL SETUSER NAME reset RULES...` (exactly these rules)."""
    _, name, *rules = line.split()
    return ["ACL", "SETUSER", name, "reset", *rules]


def apply(client, lines: list[str]) -> bool:
    """Make a running Redis's users exactly `lines`: the operator and service first, `default` last (changing
    the user a connection is logged in as may end that connection). Returns whether the server has an ACL
    file to save them to (asked first, for the same reason)."""
    has_file = bool(client.config_get("aclfile").get("aclfile"))
    for line in sorted(lines, key=lambda x: x.split()[1] == "default"):
        client.execute_command(*setuser_args(line))
    return has_file


def write_acl_file(path: Path, lines: list[str]) -> Path:
    """Write the ACL file readable by its owner only (it holds password hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path
