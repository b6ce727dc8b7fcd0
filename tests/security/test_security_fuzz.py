"""Protocol fuzzing through real WebSockets: thousands of random and mutated frames.

Hypothesis generates the frames (bad JSON, wrong types, huge numbers, deep nesting, every Unicode
category, lone surrogates, binary); each must get exactly one documented answer or a documented
close, and a normal client on another socket must keep working between batches.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import orjson
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatserver.protocol import FRAME_FIELDS, CloseCode, ErrorCode

CONV = "$CONV"  # replaced by a real conversation id of the fuzzing user when sent
DOCUMENTED_ERRORS = {str(c) for c in ErrorCode} - {str(ErrorCode.INTERNAL_ERROR)}
DOCUMENTED_CLOSES = {int(c) for c in CloseCode}
BATCHES, BATCH_SIZE = 60, 50

lone_surrogates = st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\udbff\u0041"])
any_text = st.text(st.characters(codec=None, categories=None), max_size=40) | lone_surrogates
numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([2**53, 2**63, -(2**63) - 1, 1e308, -0.0])
)
scalars = st.none() | st.booleans() | numbers | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
field_values = {
    "conversation_id": st.just(CONV) | st.text(max_size=70) | json_values,
    "text": any_text | st.text(min_size=3900, max_size=4100) | json_values,
    "after_seq": numbers | json_values,
    "score": numbers | json_values,
    "status": st.sampled_from(["online", "away", "offline", "busy"]) | json_values,
    "channel": st.sampled_from(["web", "app", "wechat", "nope"]) | json_values,
    "cid": st.text(max_size=70) | json_values,
    "token": any_text | json_values,
}
shaped = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    st.sampled_from([*FRAME_FIELDS, "", "AUTH", "send ", "__proto__"]) | json_values,
    st.dictionaries(
        st.sampled_from(sorted({*field_values, "to_group", "advisor_id", "comment"})),
        json_values,
        max_size=4,
    )
    | st.fixed_dictionaries({}, optional={k: v for k, v in field_values.items()}),
)

# Well-typed frames with edge values, so generation reaches the handlers and not only the parser.
plausible = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    st.sampled_from(sorted(FRAME_FIELDS)),
    st.fixed_dictionaries(
        {
            "cid": st.text(min_size=1, max_size=64),
            "conversation_id": st.just(CONV) | st.just(CONV) | st.text(min_size=1, max_size=64),
        },
        optional={
            "text": any_text,
            "after_seq": st.integers(-1, 2**53 + 1),
            "score": st.integers(-1, 7),
            "status": st.sampled_from(["online", "away", "offline", "busy"]),
            "channel": st.sampled_from(["web", "app", "wechat", "nope"]),
            "to_group": st.text(max_size=65),
            "advisor_id": st.text(max_size=65),
            "comment": any_text,
            "contact": any_text,
            "token": any_text,
        },
    ),
)


def _encode(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)


def _mutate(text: str, start: int, end: int, junk: str) -> str:
    start, end = sorted((start % (len(text) + 1), end % (len(text) + 1)))
    return text[:start] + junk + text[end:]


nested_depth = st.integers(min_value=100, max_value=40_000)
frames = st.one_of(
    st.builds(_encode, plausible, st.booleans()),
    st.builds(_encode, plausible, st.just(True)),
    st.builds(_encode, shaped, st.booleans()),
    st.builds(_encode, json_values, st.just(True)),
    st.builds(
        _mutate,
        st.builds(_encode, shaped, st.just(True)),
        st.integers(0, 200),
        st.integers(0, 200),
        st.sampled_from(["", "\\", '"', "}", "{", ",", "\\ud800", "\x00", "]]", "\u2028", "🀄"]),
    ),
    nested_depth.map(lambda n: "[" * n + "]" * n),
    nested_depth.map(
        lambda n: '{"type": "send", "conversation_id": "$CONV", "text": ' + "[" * n + "]" * n + "}"
    ),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=200),
    st.binary(max_size=300),
)


def generate_batches() -> list[list[str | bytes]]:
    batches: list[list[str | bytes]] = []

    @settings(
        max_examples=BATCHES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(frames, min_size=BATCH_SIZE, max_size=BATCH_SIZE))
    def collect(batch: list[str | bytes]) -> None:
        batches.append(batch)

    collect()
    return batches


class Fuzzer:
    """One authenticated socket that sends a frame, then a sentinel ping, and checks what came back."""

    def __init__(self, hub: Any, sec: Any, token: str, conv_id: str):
        self.hub, self.sec, self.token, self.conv_id = hub, sec, token, conv_id
        self.ws: Any = None
        self.sent = self.closes = 0
        self.outcomes: Counter[str] = Counter()

    async def open(self) -> None:
        self.ws = await self.sec.raw_auth(self.hub.base_url, self.token, max_size=2**24)

    async def one(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            frame = frame.replace(CONV, self.conv_id)
            if not _utf8(frame):  # only ASCII-escaped surrogates can travel in a text frame
                frame = frame.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        sentinel = f"sentinel-{self.sent}"
        self.sent += 1
        try:
            await self.ws.send(frame)
            await self.ws.send(orjson.dumps({"type": "ping", "cid": sentinel}).decode())
            answers = []
            while True:
                event = orjson.loads(await self.ws.recv())
                assert isinstance(event, dict) and isinstance(event.get("type"), str), event
                if event.get("cid") == sentinel:
                    assert event["type"] == "ack", event
                    break
                if event["type"] in ("ack", "error"):
                    answers.append(event)
        except websockets.ConnectionClosed:
            assert self.ws.close_code in DOCUMENTED_CLOSES, (self.ws.close_code, frame[:200])
            self.outcomes[f"close {self.ws.close_code}"] += 1
            self.closes += 1
            await self.open()
            return
        assert len(answers) == 1, (frame[:300], answers)
        answer = answers[0]
        self.outcomes[answer.get("code", "ack")] += 1
        if answer["type"] == "error":
            assert answer["code"] in DOCUMENTED_ERRORS, (frame[:300], answer)
            assert isinstance(answer.get("message"), str) and answer["message"], answer
        cid = _cid_of(frame)
        if cid is not None:
            assert answer.get("cid") == cid, (frame[:300], answer)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cid_of(frame: str | bytes) -> str | None:
    """The cid the server must echo: a valid frame's own (1-64 characters), else none is promised."""
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    cid = data.get("cid")
    if isinstance(cid, str) and 0 < len(cid) <= 64:
        return cid
    return None


async def test_random_and_mutated_frames_get_documented_answers(hub, sec):
    # Thousands of frames a minute from one address: the flood limits have their own tests.
    guard = hub.services.guard
    guard.frame_rate = guard.frame_burst = guard.ip_frame_rate = guard.ip_frame_burst = 1e9
    batches = generate_batches()
    fuzzers = []
    for username in ("investor1", None, "advisor1", "supervisor1"):
        token = await hub.token(username)
        probe, conv = (
            (await hub.investor(username)) if username in ("investor1", None) else (None, None)
        )
        if probe is not None:
            await probe.close()
        fuzzer = Fuzzer(hub, sec, token, conv["id"] if conv else "no-conversation-here")
        await fuzzer.open()
        fuzzers.append(fuzzer)
    normal, normal_conv = await hub.investor("investor2")
    start = time.monotonic()
    for number, batch in enumerate(batches):
        fuzzer = fuzzers[number % len(fuzzers)]
        for frame in batch:
            await fuzzer.one(frame)
        # The bystander is served normally between every batch.
        assert (await normal.request({"type": "ping"}))["type"] == "ack"
        ack = await normal.say(normal_conv["id"], f"第{number}批之后还在吗")
        assert ack["type"] == "ack" and not ack["duplicate"]
    sent = sum(f.sent for f in fuzzers)
    outcomes = sum((f.outcomes for f in fuzzers), Counter())
    print(f"{sent} fuzz frames in {time.monotonic() - start:.1f} s: {dict(outcomes.most_common())}")
    # The generator reached deep into the protocol, not just the JSON parser.
    assert {
        "bad_json",
        "bad_frame",
        "unknown_type",
        "missing_field",
        "invalid_field",
        "ack",
        "forbidden",
        "conversation_not_found",
    } <= set(outcomes)
    assert sent == BATCHES * BATCH_SIZE >= 2000
    assert (await hub.http("GET", "/healthz"))[0] == 200
