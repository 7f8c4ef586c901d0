"""The simulator speaks the Azure wire protocol to the real openai SDK."""

from __future__ import annotations

import openai
import pytest

from llm.client import ProviderConfig, create_client
from llm.simulator import Fault, Simulator
from llm.tokens import count_messages, count_text

MESSAGES = [
    {"role": "system",
     "content": "Draft a clinical note.\nSECTIONS: Subjective, Objective, Assessment, Plan"},
    {"role": "user", "content": "Reports better sleep. Walked daily. Mood brighter. Continue."},
]


@pytest.fixture
def sim():
    return Simulator()


@pytest.fixture
def client(sim):
    return create_client(ProviderConfig(), sim)


def test_completion_has_sections_and_exact_usage(client):
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                           max_tokens=300)
    text = reply.choices[0].message.content
    assert [line.split(":")[0] for line in text.splitlines()] == [
        "Subjective", "Objective", "Assessment", "Plan"]
    assert reply.usage.prompt_tokens == count_messages(MESSAGES)
    assert reply.usage.completion_tokens == count_text(text)
    assert reply.choices[0].finish_reason == "stop"


def test_max_tokens_cuts_the_reply(client):
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"


def test_stream_with_usage_chunk(client):
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                            max_tokens=300, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices == []  # content-filter results arrive on an empty first chunk
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (count_messages(MESSAGES),
                                                              count_text(text))


def test_stream_without_include_usage_has_no_usage(client):
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                 max_tokens=50, stream=True))
    assert all(c.usage is None for c in chunks)


def test_cached_tokens_on_repeated_long_prefix(client):
    long_system = {"role": "system", "content": "context " * 1200 + "\nSECTIONS: Subjective, Plan"}
    messages = [long_system, MESSAGES[1]]
    first = client.chat.completions.create(model="m", messages=messages, max_tokens=10)
    second = client.chat.completions.create(model="m", messages=messages, max_tokens=10)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 1024 <= cached <= second.usage.prompt_tokens


@pytest.mark.parametrize(("fault", "error"), [
    (Fault("status", status=429, retry_after=2), openai.RateLimitError),
    (Fault("status", status=500), openai.InternalServerError),
    (Fault("timeout"), openai.APITimeoutError),
    (Fault("content_filter"), openai.BadRequestError),
])
def test_faults(sim, client, fault, error):
    sim.inject(fault)
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10)
    if fault.retry_after:
        assert caught.value.response.headers["retry-after"] == "2"
    # The next call works: faults are one-shot.
    assert client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=10).usage


def test_cut_stream_raises_mid_way(sim, client):
    sim.inject(Fault("cut_stream"))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=300,
                                            stream=True, stream_options={"include_usage": True})
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert received and all(c.usage is None for c in received)
