"""Quick-reply templates and placeholder rendering."""

import pytest

from bot import KBFormatError, load_quick_replies, placeholders, render_template
from bot.templates import parse_quick_replies


def test_known_placeholders_are_filled() -> None:
    text = render_template(
        "{customer_name}您好，我是{advisor_name}",
        {"customer_name": "张先生", "advisor_name": "小李"},
    )
    assert text == "张先生您好，我是小李"


def test_missing_known_placeholder_gets_default() -> None:
    assert render_template("{customer_name}您好", {}) == "客户您好"
    assert render_template("{customer_name}您好", {"customer_name": "  "}) == "客户您好"


def test_unknown_placeholder_is_left_verbatim() -> None:
    assert render_template("订单{order_id}已提交", {}) == "订单{order_id}已提交"


def test_values_are_inserted_literally_without_recursion() -> None:
    assert (
        render_template("{customer_name}", {"customer_name": "{advisor_name}"}) == "{advisor_name}"
    )


def test_double_braces_escape_and_stray_braces_survive() -> None:
    assert render_template("{{customer_name}} {", {"customer_name": "x"}) == "{customer_name} {"


def test_placeholders_lists_names_once() -> None:
    assert placeholders("{a}{b}{a}{{c}}") == ("a", "b")


def test_shipped_quick_replies_are_valid() -> None:
    replies = load_quick_replies()
    assert 25 <= len(replies) <= 40
    assert len({r.id for r in replies}) == len(replies)
    for reply in replies:
        rendered = render_template(reply.text, {"customer_name": "王女士", "advisor_name": "小张"})
        assert "{" not in rendered, reply.id


def test_bad_quick_reply_lines_raise_with_line_number() -> None:
    with pytest.raises(KBFormatError) as err:
        parse_quick_replies('{"id":"a","title":"t","text":"x"}\n{"id":"b","title":""}')
    assert err.value.line == 2
    with pytest.raises(KBFormatError):
        parse_quick_replies('{"id":"a","title":"t","text":"x"}\n{"id":"a","title":"t","text":"y"}')
