"""``NAME=VALUE`` items of a command-line option (``--map``, ``--teacher``, ``--set``), split one way.

Every option that takes such items reports a bad one alike: ``--map 'bogus': expected FIELD=COLUMN,
e.g. instruction=question`` (the option, the item as given, the expected form). What the name or the
value may be is the caller's to check; errors about them should start with the option and name too.
"""

from __future__ import annotations

from .errors import EduloraError


def split_name_value(item: str, option: str, form: str = "NAME=VALUE", example: str | None = None, *,
                     secret: bool = False, empty_value: bool = False) -> tuple[str, str]:
    """``"name=value"`` as ``("name", "value")``, each stripped; the value may hold '=' itself.

    Raises ``EduloraError`` naming ``option`` and the item when the '=', the name or (unless
    ``empty_value``) the value is missing. With ``secret`` the message shows only the part before
    the '=': the value is a token, and error lines end up in terminals and logs.
    """
    name, sep, value = item.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not (value or empty_value):
        shown = name if secret else item
        raise EduloraError(f"{option} {shown!r}: expected {form}" + (f", e.g. {example}" if example else ""))
    return name, value


__all__ = ["split_name_value"]
