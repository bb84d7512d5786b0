"""`fasttune serve`: the real server in a subprocess, one per target (the session's trained chat run folder,
the function-calling notebook run's merged folder, the reasoning notebook run's GGUF), talked to with the
real `openai` client and plain HTTP. Each answer is held to what `fasttune chat` says for the same prompt.
The first tests need no model: how streamed text is cut (stop strings) and split (thinking)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from fasttune import thinking
from fasttune.serve.output import Parts, Reply, Stops
from helpers import ROOT, invoke

KEY = "serve-test-key"
PROMPT = "What is the capital of France?"
QUESTION = "How many hours are in 5 days?"
e2e = pytest.mark.e2e  # reads a trained run: the slow tier


# --- the text pipeline, piece by piece (no model)
ANSWERS = ["<think>\n3 × 4 = 12.\n</think>\n\n12 apples", "  plain answer \n", "<think>\nnever closes",
           "<think>\n\n</think>\n\n", "", "<thin", "no tags </think> here"]


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
@pytest.mark.parametrize("answer", ANSWERS)
def test_streamed_parts_join_to_split_answer(answer, size):
    parts, got = Parts(reasoning=True), {"content": "", thinking.REASONING: ""}
    pieces = [answer[i:i + size] for i in range(0, len(answer), size)]
    for field, text in [d for p in pieces for d in parts.feed(p)] + parts.finish():
        got[field] += text
    thought, final = thinking.split_answer(answer)
    if "</think>" in answer and not answer.startswith("<think>"):
        thought, final = None, answer.strip()  # no block opened: all of it is the answer, as it streamed
    assert (got[thinking.REASONING] if parts.thought else None, got["content"]) == (thought, final)


def test_a_think_block_opened_by_the_prompt_is_reasoning_until_it_closes():
    parts = Parts(reasoning=True, prompt="<|im_start|>assistant\n<think>\n")
    deltas = parts.feed("5 × 24 = 120.\n</thi") + parts.feed("nk>\n\n120 hours") + parts.finish()
    assert deltas == [(thinking.REASONING, "5 × 24 = 120."), ("content", "120 hours")]


def test_stop_strings_cut_across_pieces_and_are_not_returned():
    stops = Stops(["END", "\n\n"])
    assert stops.feed("one E") == "one " and stops.feed("N") == "" and not stops.hit
    assert stops.feed("Dtwo") == "" and stops.hit
    reply = Reply(["."], strip=False)
    text = "".join(d.get("content", "") for p in (" Paris", " is", " big.", " More") for d in reply.feed(p))
    assert text == " Paris is big" and reply.stopped and reply.finish_reason("length") == "stop"


def test_tool_calls_come_out_in_openais_shape():
    reply = Reply([], tools=True, prefix='<tool_call>\n{"name": "convert_units", "arguments": ')
    assert reply.feed('{"value": 4, "to_unit": "km"}}\n</tool_call>') == []  # held: it may be a call
    [delta] = reply.finish()
    [call] = delta["tool_calls"]
    assert call["function"] == {"name": "convert_units", "arguments": '{"value": 4, "to_unit": "km"}'}
    assert call["id"].startswith("call_") and call["index"] == 0
    assert reply.message()["content"] is None and reply.finish_reason("stop") == "tool_calls"


# --- the real server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`fasttune serve TARGET` in a fresh process on a free port; `ready()` waits for /health."""

    def __init__(self, target, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = KEY if "--api-key" in args else None
        self.process = subprocess.Popen([sys.executable, "-m", "fasttune.cli", "serve", str(target), "--port",
                                         str(self.port), *args], cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path, headers=self.auth())
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": "application/json", **self.auth(), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def ready(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"fasttune serve exited {self.process.returncode}: {self.process.stdout.read()[-3000:]}")
            try:
                assert self.get("/health")["status"] == "ok"
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        pytest.fail("fasttune serve did not answer /health within 180 s")

    def client(self, **kwargs):
        import openai

        return openai.OpenAI(**{"base_url": self.url + "/v1", "api_key": self.key or "none", "max_retries": 0, **kwargs})

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def servers(chat_run_hf, notebook_run):
    """The three servers, started together (each loads while the tests of the one before run): the chat
    run folder behind an API key, the function-calling run's merged folder, the reasoning run's f16 GGUF."""
    targets = {"run": (chat_run_hf.path, "--api-key", KEY),
               "merged": (notebook_run("function_calling").path / "export" / "merged",),
               "gguf": (notebook_run("reasoning_sft").path / "export" / "model-f16.gguf",)}
    started = {name: (Server(*args), args[0]) for name, args in targets.items()}
    yield started
    for server, _ in started.values():
        server.stop()


@pytest.fixture(scope="module")
def run(servers):
    server, target = servers["run"]
    return server.ready(), target


def answer(client, prompt: str = PROMPT, **kwargs):
    return client.chat.completions.create(model="served", messages=[{"role": "user", "content": prompt}],
                                          temperature=0, **{"max_tokens": 24, **kwargs})


@e2e
def test_greedy_answer_is_fasttune_chats_and_the_stream_joins_to_it(run):
    server, target = run
    client = server.client()
    [model] = client.models.list().data
    assert model.id == target.name
    reply = answer(client)
    said = invoke("chat", str(target), "--prompt", PROMPT, "--max-new-tokens", "24")
    assert said.returncode == 0, said.stderr[-2000:]
    assert reply.choices[0].message.content == said.stdout.strip() != ""
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens > 0
    chunks = list(answer(client, stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1 and "".join(pieces) == reply.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reply.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


@e2e
def test_a_wrong_or_missing_api_key_is_refused(run):
    import openai

    server, _ = run
    with pytest.raises(openai.AuthenticationError) as refused:
        answer(server.client(api_key="wrong"))
    assert refused.value.status_code == 401 and "API key" in refused.value.message
    status, body = server.post("/v1/chat/completions", b"{}", headers={"Authorization": ""})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


@e2e
def test_malformed_requests_are_400s_with_a_message(run):
    import openai

    server, _ = run
    status, body = server.post("/v1/chat/completions", b'{"messages": [{"role": "usr", "content": "hi"}]}')
    assert status == 400 and body["error"]["message"].startswith("messages.0.role: Input should be 'system'")
    status, body = server.post("/v1/chat/completions", b'{"messages": [')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/v1/completions")  # a 2 MB body is refused before a byte of it is read
    for name, value in {**server.auth(), "Content-Length": "2000000"}.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in json.loads(response.read())["error"]["message"]
    with pytest.raises(openai.BadRequestError) as refused:
        answer(server.client(), max_tokens=100_000)
    assert "above this server's limit of 2048" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:  # SmolLM2's template has no thinking switch
        answer(server.client(), extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert "no thinking switch" in refused.value.message


@e2e
def test_concurrent_requests_are_queued_and_all_answered(run):
    server, _ = run
    client = server.client()
    prompts = ["Name a colour.", "What is 2 + 2?"] * 4
    alone = {p: answer(client, p, max_tokens=8).choices[0].message.content for p in set(prompts)}
    got: dict[int, str] = {}

    def ask(i: int) -> None:
        got[i] = answer(client, prompts[i], max_tokens=8).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [got.get(i) for i in range(8)] == [alone[p] for p in prompts]  # one at a time: nothing mixed


@e2e
def test_a_client_that_leaves_mid_stream_frees_its_slot(run):
    server, _ = run
    before = server.get("/health")["cancelled"]
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 1.5, "seed": 0,
                       "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while received.count(b"data: ") < 4:
            received += raw.recv(4096)
    deadline = time.monotonic() + 20  # 2000 tokens would take minutes
    while (health := server.get("/health"))["generating"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health["generating"] == 0 and health["cancelled"] == before + 1, health
    assert answer(server.client(), max_tokens=4).choices[0].message.content


@e2e
def test_tool_calls_from_the_function_calling_run_are_what_its_template_says(servers):
    """Named and `required` tool_choice start the answer inside a <tool_call> (as the template writes
    calls); whatever the 3-step model then writes, the server's tool_calls are the calls `fasttune chat`'s
    renderer and generation give for the same request, parsed by the function-calling task."""
    from fasttune.chat import open_target
    from fasttune.tasks.function_calling import parse_calls

    server, target = servers["merged"]
    client = server.ready().client()
    bot = open_target(target)
    rows = [json.loads(line) for line in (ROOT / "recipes/data/tools_eval.jsonl").read_text().splitlines()[:3]]
    called = 0
    for i, row in enumerate(rows):  # the first two with their tool named, the third as the model likes
        user = [m for m in row["messages"] if m["role"] == "user"][:1]
        name = next(m["tool_calls"][0]["function"]["name"] for m in row["messages"] if m.get("tool_calls"))
        choice, prefix = (({"type": "function", "function": {"name": name}},
                           '<tool_call>\n{"name": "%s", "arguments": ' % name) if i < 2 else ("auto", None))
        reply = client.chat.completions.create(model="served", messages=user, tools=row["tools"], tool_choice=choice,
                                               temperature=0, max_tokens=32).choices[0]
        said = (prefix or "") + bot.complete(bot.render(user, prefix, row["tools"]), 32)
        calls = [(c["name"], c["arguments"]) for c in parse_calls(said)]
        got = [(c.function.name, json.loads(c.function.arguments)) for c in reply.message.tool_calls or []]
        assert got == calls, (said, reply)
        assert reply.finish_reason == "tool_calls" if calls else reply.message.content == said.strip()
        called += bool(calls) and prefix is not None and got[0][0] == name
    assert called, "no named tool_choice ended in a well-formed call"


@e2e
def test_thinking_on_and_off_through_the_gguf_as_fasttune_chat_splits_it(servers):
    server, target = servers["gguf"]
    client = server.ready().client()
    for mode in ("on", "off"):
        switch = {"chat_template_kwargs": {"enable_thinking": mode == "on"}}
        message = answer(client, QUESTION, max_tokens=32, extra_body=switch).choices[0].message
        said = invoke("chat", str(target), "--prompt", QUESTION, "--thinking", mode, "--max-new-tokens", "32")
        assert said.returncode == 0, said.stderr[-2000:]
        assert (getattr(message, "reasoning_content", None), message.content) == thinking.split_answer(said.stdout.strip())
        streamed = {"content": "", "reasoning_content": ""}
        for chunk in answer(client, QUESTION, max_tokens=32, extra_body=switch, stream=True):
            for field in streamed:
                streamed[field] += getattr(chunk.choices[0].delta, field, None) or ""
        assert streamed == {"content": message.content, "reasoning_content": getattr(message, "reasoning_content", None) or ""}
    assert thinking.split_answer(said.stdout.strip())[0] is None  # "off": the empty think block was prefilled
