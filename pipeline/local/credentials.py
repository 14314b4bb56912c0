"""Fresh API keys for a local stack run, and the ``local.env`` file that hands them out."""

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from schemas.keys import KEY_PREFIXES, hash_api_key, new_api_key


@dataclass(frozen=True)
class ApiKeys:
    """One key per scope (write, server, read, admin); the API only ever sees hashes."""

    keys: dict[str, str]

    @classmethod
    def generate(cls) -> "ApiKeys":
        return cls({kind: new_api_key(kind) for kind in KEY_PREFIXES})

    def hash_env(self) -> dict[str, str]:
        """What the API process is configured with (api/settings.py)."""
        return {
            f"INTENTFLOW_{kind.upper()}_KEY_HASHES": hash_api_key(key)
            for kind, key in self.keys.items()
        }

    def key_env(self) -> dict[str, str]:
        return {f"INTENTFLOW_{kind.upper()}_KEY": key for kind, key in self.keys.items()}


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Shell ``KEY=value`` lines, readable by the owner only (they hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    # Written beside it, then renamed: a reader (a script sourcing it as soon as it
    # exists) never sees a half-written file, nor one readable by others.
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    # The mode given to open() does not apply to a file that already existed.
    partial.chmod(0o600)
    partial.replace(path)
