"""The advisor console's waiting-queue panel in Chromium: with advisor1 full (capacity 1), a
second investor's handoff shows in advisor1's queue, and leaves it when advisor1 takes it."""

from __future__ import annotations

import re
from typing import Any

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

QUESTION = "开户需要什么材料"  # the account group: only advisor1 of those online here serves it


@pytest.fixture(scope="module")
def hub(hub_factory: Any) -> Any:
    return hub_factory(CHATSERVER_DEFAULT_CAPACITY="1")


def hand_off(pages: Any) -> tuple[Any, str]:
    investor = pages.investor()
    pages.say(investor, QUESTION)
    expect(investor.locator(".msg.role-bot").last).to_contain_text("身份证", timeout=15000)
    investor.click("#handoff")
    return investor, pages.conversation_of(investor)


def test_a_handoff_waiting_for_a_full_advisor_shows_in_the_queue_panel(pages: Any) -> None:
    advisor = pages.staff("/console", "advisor1")
    expect(advisor.locator("#queue .empty")).to_have_text("暂无排队", timeout=15000)

    first, first_id = hand_off(pages)
    first_pane = pages.chat_pane(advisor, first_id)
    expect(first.locator("#chat-status")).to_contain_text("王顾问", timeout=15000)

    second, second_id = hand_off(pages)
    expect(second.locator("#chat-status")).to_have_text("正在为您转接人工顾问", timeout=15000)
    item = advisor.locator(f'#queue .queue-item[data-conversation="{second_id}"]')
    expect(item).to_be_visible(timeout=15000)  # within one refresh (every 4 s)
    expect(item).to_contain_text("account")
    expect(item).to_contain_text(re.compile(r"等待 \d+s"))
    expect(item.locator(".queue-place")).to_contain_text("第 1 位")
    expect(advisor.locator("#queue-count")).to_have_text("1")
    assert advisor.locator(f'.tab[data-conversation="{second_id}"]').count() == 0

    # advisor1 frees its one seat: the waiting chat comes to it and leaves the queue at once
    # (the `assigned` event refreshes the panel, no need to wait for the next poll).
    first_pane.locator(".close-chat").click()
    pages.chat_pane(advisor, second_id)
    expect(item).to_have_count(0, timeout=3000)
    expect(advisor.locator("#queue-count")).to_have_text("0")
    assert pages.errors == []
