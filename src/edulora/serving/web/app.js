// The teacher page: run a tutoring conversation through the server's own OpenAI-compatible API, see
// edulora's pedagogy flags on each reply, and rate or correct it (the review page decides what is trained on).
// The teacher's key and this conversation's grade level and style go with every request as metadata,
// never into the chat log. Helpers shared with the review page are in common.js.
"use strict";

const state = { messages: [], busy: false };

// This conversation's metadata: the key (answer, worked solution) and the grade level / style to teach in.
function conversationMetadata() {
  const meta = {};
  for (const field of ["answer", "solution"]) {
    const value = $(`#${field}`).value.trim();
    if (value) meta[field] = value;
  }
  if ($("#grade").value) meta.grade_level = $("#grade").value;
  if ($("#style").value) meta.teaching_style = $("#style").value;
  return Object.keys(meta).length ? meta : null;
}

function showKeyState() {
  const set = $("#answer").value.trim() || $("#solution").value.trim();
  $("#key-state").textContent = set ? "(set for this conversation)" : "";
}

function describe(info) {
  const parts = [info.model];
  for (const key of ["subject", "grade_level", "teaching_style"]) {
    if (info[key]) parts.push(info[key].replaceAll("_", " "));
  }
  let text = `answered by ${parts.join(" · ")}`;
  if (info.routed) text += ` (auto: ${info.route_reason})`;
  return text;
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    $("#settings").open = true;
    showError("This server needs a key: enter the API key or your teacher token under Settings.");
    return;
  }
  if (!response.ok) return showError(await errorText(response));
  showError("");
  const select = $("#model");
  const chosen = select.value;
  select.replaceChildren();
  for (const model of (await response.json()).data) {
    const option = document.createElement("option");
    option.value = model.id;
    const detail = [model.subject, model.grade_level, model.teaching_style].filter(Boolean)
      .map((v) => v.replaceAll("_", " ")).join(", ");
    option.textContent = model.id === "auto" ? "auto (pick by question)"
      : model.kind === "base" ? `${model.id} (base model)` : detail ? `${model.id} — ${detail}` : model.id;
    select.append(option);
  }
  const ids = [...select.options].map((o) => o.value);
  select.value = ids.includes(chosen) ? chosen : ids.includes("auto") ? "auto" : ids[0];
}

function addUserMessage(text) {
  const node = document.createElement("article");
  node.className = "message user";
  node.textContent = text;
  $("#log").append(node);
}

function addReplyNode() {
  const node = $("#reply-template").content.firstElementChild.cloneNode(true);
  $("#log").append(node);
  return node;
}

// Reads the server-sent events of a streamed completion, calling onChunk for each parsed chunk.
async function readStream(response, onChunk) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") return;
      onChunk(JSON.parse(data));
    }
  }
}

async function send(text) {
  state.busy = true;
  $("#send").disabled = true;
  showError("");
  addUserMessage(text);
  const asked = [...state.messages, { role: "user", content: text }];
  const node = addReplyNode();
  const textBox = $(".text", node);
  const reply = { id: null, token: null, text: "" };
  const request = { model: $("#model").value, messages: asked, stream: true };
  const metadata = conversationMetadata();
  if (metadata) request.metadata = metadata;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request),
    });
    if (!response.ok) throw new Error(await errorText(response));
    await readStream(response, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.edulora && chunk.edulora.model) {  // the first chunk: who answers
        reply.id = chunk.id;
        reply.token = chunk.edulora.feedback_token;
        $(".answered-by", node).textContent = describe(chunk.edulora);
      }
      if (chunk.edulora && chunk.edulora.flags) showFlags($(".flags", node), chunk.edulora.flags);  // the last
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (delta) {
        reply.text += delta;
        textBox.textContent = displayText(reply.text);
        node.scrollIntoView({ block: "end" });
      }
    });
    state.messages = [...asked, { role: "assistant", content: reply.text }];
    if (reply.token) setUpFeedback(node, reply);
  } catch (err) {
    node.classList.add("failed");
    textBox.textContent = `Error: ${err.message}`;
  } finally {
    state.busy = false;
    $("#send").disabled = false;
  }
}

// The server keeps the conversation, the reply and its flags; feedback names the reply and proves it was
// sent here, and the key under Settings says which teacher rates.
function setUpFeedback(node, reply) {
  const box = $(".feedback", node);
  box.hidden = false;
  let rating = null;
  const up = $(".rate-up", box);
  const down = $(".rate-down", box);
  const status = $(".status", box);

  async function save() {
    status.textContent = "Saving…";
    const response = await fetch("/v1/feedback", {
      method: "POST", headers: headers(),
      body: JSON.stringify({
        completion_id: reply.id, feedback_token: reply.token, rating,
        comment: $(".comment", box).value, correction: $(".better", box).value,
      }),
    });
    status.textContent = response.ok ? "Saved ✓" : `Not saved: ${await errorText(response)}`;
  }

  function rate(value) {
    rating = rating === value ? null : value;  // a second press takes the rating back
    up.setAttribute("aria-pressed", String(rating === 1));
    down.setAttribute("aria-pressed", String(rating === -1));
    save();
  }

  up.addEventListener("click", () => rate(1));
  down.addEventListener("click", () => rate(-1));
  $(".save", box).addEventListener("click", save);
}

function setUp() {
  const input = $("#input");
  setUpKeyField(loadModels);
  $("#ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || state.busy) return;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("#ask").requestSubmit();
    }
  });
  for (const field of ["#answer", "#solution"]) $(field).addEventListener("input", showKeyState);
  $("#student-view").addEventListener("change", (event) => {
    document.body.classList.toggle("student-view", event.target.checked);
  });
  $("#reset").addEventListener("click", () => {
    state.messages = [];
    $("#answer").value = "";
    $("#solution").value = "";
    showKeyState();
    for (const node of document.querySelectorAll(".message")) node.remove();
    input.focus();
  });
  loadModels().catch((err) => showError(`Cannot reach the server: ${err.message}`));
}

setUp();
