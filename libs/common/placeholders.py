"""Refuse the sample secrets that deploy files ship, so a copied example never runs.

deploy/k8s/config.yaml and deploy/env/*.example hold values that tell people to replace
them; they are long enough to pass a length check. A service given one stops at start
with a message naming the setting. tests/security/test_deploy checks that every
placeholder in the deploy files is one of these.
"""

from __future__ import annotations

# Words that only a sample value contains (lowercased). Not "secret" or "example" alone:
# real generated values never contain these, but test secrets may say "secret".
_MARKERS = ("replace-with", "replace_with", "change-me", "change_me", "changeme", "placeholder")


def is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return any(marker in lowered for marker in _MARKERS)


def refuse_placeholder(setting: str, value: str) -> None:
    """Raise ValueError when `value` is a sample from the deploy files, not a secret."""
    if value and is_placeholder(value):
        raise ValueError(
            f"{setting} is still the sample value from the deploy files; set a real secret "
            '(e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
