"""twin.errors.user_errors: a UserError becomes one line on stderr and exit status 2; any other
exception is left alone."""

from __future__ import annotations

import pytest

from twin.config import ConfigError
from twin.errors import USAGE_EXIT, UserError, one_line, user_errors


def test_user_error_is_one_line_on_stderr_and_status_2(capsys):
    with pytest.raises(SystemExit) as e, user_errors("twin-x"):
        raise ConfigError("a.b = 3 is out of range; allowed range: [0, 1]")
    assert e.value.code == USAGE_EXIT == 2
    assert capsys.readouterr().err == "twin-x: a.b = 3 is out of range; allowed range: [0, 1]\n"


def test_a_message_of_several_lines_is_printed_on_one(capsys):
    msg = "Could not override 'a.b'.\nTo append to your config use +a.b=1\n"
    with pytest.raises(SystemExit), user_errors("twin-x"):
        raise UserError(msg)
    err = capsys.readouterr().err
    assert err == "twin-x: Could not override 'a.b'.; To append to your config use +a.b=1\n"
    assert one_line("  x \n\n y ") == "x; y"


def test_other_errors_keep_their_traceback():
    with pytest.raises(KeyError), user_errors("twin-x"):
        raise KeyError("a bug")
