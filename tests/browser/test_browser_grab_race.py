"""Grab mode (抢单) in Chromium: two advisor consoles race to claim one chat; exactly one wins
and the other sees it gone ("已被其他顾问接走")."""

from __future__ import annotations

import time
from typing import Any

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

GRAB_ALL = "general,account,trading,margin,wealth,complaints"
CLAIM = '(id) => { const b = document.querySelector(`.pool-item[data-conversation="${id}"] .claim`); if (b) b.click(); return !!b; }'


@pytest.fixture(scope="module")
def hub(hub_factory: Any) -> Any:
    # A long auto-assign fallback so only the claims decide who gets the chat.
    return hub_factory(CHATSERVER_GRAB_GROUPS=GRAB_ALL, CHATSERVER_POOL_FALLBACK_AFTER_S="120")


def test_two_advisors_race_for_one_chat_and_exactly_one_wins(pages: Any) -> None:
    first = pages.staff("/console", "advisor1")
    second = pages.staff("/console", "advisor3")  # both serve the account group
    investor = pages.investor()
    pages.say(investor, "开户需要什么材料")
    expect(investor.locator(".msg.role-bot").last).to_contain_text("身份证", timeout=15000)
    investor.click("#handoff")
    conversation_id = pages.conversation_of(investor)

    for console in (first, second):
        expect(
            console.locator(f'.pool-item[data-conversation="{conversation_id}"] .claim')
        ).to_be_visible(timeout=15000)
    # Fire both claims back to back, without waiting for either answer.
    clicked = [first.evaluate(CLAIM, conversation_id), second.evaluate(CLAIM, conversation_id)]
    assert clicked[0], "the first console had a claim button"

    tab = f'.tab[data-conversation="{conversation_id}"]'
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        owners = [c for c in (first, second) if c.locator(tab).count() == 1]
        if owners:
            break
        first.wait_for_timeout(100)
    first.wait_for_timeout(800)  # let any (wrong) second assignment show up too
    owners = [c for c in (first, second) if c.locator(tab).count() == 1]
    assert len(owners) == 1, "exactly one advisor gets the chat"
    winner = owners[0]
    loser = second if winner is first else first

    gone = loser.locator(f'.pool-item[data-conversation="{conversation_id}"] .gone')
    expect(gone).to_have_text("已被其他顾问接走", timeout=5000)
    expect(
        loser.locator(f'.pool-item[data-conversation="{conversation_id}"] .claim')
    ).to_have_count(0)
    expect(winner.locator(f'.pool-item[data-conversation="{conversation_id}"]')).to_have_count(0)

    winner_name = "王顾问" if winner is first else "陈顾问"
    expect(investor.locator("#chat-status")).to_contain_text(winner_name, timeout=15000)
    assert pages.errors == []
