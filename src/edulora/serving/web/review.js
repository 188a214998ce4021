// The review page: every teacher's feedback with the conversation, the reply and its pedagogy flags;
// approve (with an edited better reply) or reject each item. Only approved items are exported for training.
// "What your students received" lists the replies students were given, for their teacher to rate or correct
// (the teacher never held those replies' feedback tokens, so they go through /v1/received instead).
"use strict";

const RATINGS = { 1: "rated good", "-1": "rated bad" };

function describeState(item) {
  const by = item.reviewed_by ? ` by ${item.reviewed_by}` : "";
  return item.status === "pending" ? "waiting for review" : `${item.status}${by}`;
}

function fill(node, item) {
  node.dataset.id = item.id;
  node.dataset.status = item.status;
  $(".who", node).textContent = `From ${item.teacher || "an earlier version"} · ${item.model}` +
    (item.teaching_style ? ` · ${item.teaching_style.replaceAll("_", " ")}` : "") +
    (item.answer ? ` · key: ${item.answer}` : "");
  $(".state", node).textContent = describeState(item);
  $(".state", node).className = `state ${item.status}`;
}

function showConversation(node, messages) {
  const conversation = $(".conversation", node);
  for (const message of messages.filter((m) => m.role !== "system")) {
    const turn = document.createElement("li");
    turn.className = `turn ${message.role}`;
    turn.textContent = message.content;
    conversation.append(turn);
  }
}

// A reply a student received: the teacher's own rating, comment and better reply of it, saved as feedback.
function renderReceived(item) {
  const node = $("#received-template").content.firstElementChild.cloneNode(true);
  node.dataset.id = item.completion_id;
  const when = new Date(item.created_at * 1000).toLocaleString();
  $(".who", node).textContent = `A student of ${item.owner} · ${when} · ${item.model}` +
    (item.answer ? ` · key: ${item.answer}` : "");
  showConversation(node, item.messages);
  $(".reply .text", node).textContent = displayText(item.reply);
  showFlags($(".flags", node), item.flags);
  const mine = item.mine || {};
  let rating = mine.rating ?? null;
  const buttons = [...node.querySelectorAll(".rate")];
  const press = () => buttons.forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.rating) === rating)));
  buttons.forEach((b) => b.addEventListener("click", () => {
    rating = rating === Number(b.dataset.rating) ? null : Number(b.dataset.rating);  // a second click takes it back
    press();
  }));
  press();
  $(".comment", node).value = mine.comment || "";
  $(".correction", node).value = mine.correction || "";
  const state = $(".state", node);
  state.textContent = item.mine ? describeState(mine) : "not rated by you";
  const status = $(".status", node);
  $(".save", node).addEventListener("click", async () => {
    status.textContent = "Saving…";
    const body = { rating, comment: $(".comment", node).value, correction: $(".correction", node).value };
    const response = await fetch(`/v1/received/${encodeURIComponent(item.completion_id)}/feedback`, {
      method: "POST", headers: headers(), body: JSON.stringify(body),
    });
    if (!response.ok) {
      status.textContent = `Not saved: ${await errorText(response)}`;
      return;
    }
    state.textContent = describeState({ status: "pending" });
    status.textContent = "Saved ✓ (waiting for review)";
  });
  return node;
}

function render(item) {
  const node = $("#item-template").content.firstElementChild.cloneNode(true);
  fill(node, item);
  showConversation(node, item.messages);
  $(".reply .text", node).textContent = displayText(item.reply);
  showFlags($(".flags", node), item.flags);
  $(".verdict", node).textContent = RATINGS[item.rating] || "not rated";
  $(".note", node).textContent = item.comment ? `Comment: ${item.comment}` : "";
  $(".note", node).hidden = !item.comment;
  const correction = $(".correction", node);
  correction.value = item.correction || "";
  const status = $(".status", node);

  async function decide(decision) {
    status.textContent = "Saving…";
    const body = { status: decision };
    if (decision === "approved") body.correction = correction.value;  // approving takes the edit with it
    const response = await fetch(`/v1/feedback/${item.id}/review`, {
      method: "POST", headers: headers(), body: JSON.stringify(body),
    });
    if (!response.ok) {
      status.textContent = `Not saved: ${await errorText(response)}`;
      return;
    }
    const saved = await response.json();
    fill(node, saved);
    correction.value = saved.correction || "";
    status.textContent = "Saved ✓";
  }

  $(".approve", node).addEventListener("click", () => decide("approved"));
  $(".reject", node).addEventListener("click", () => decide("rejected"));
  return node;
}

let loading = 0;  // the latest load: an earlier one answering late must not replace what was asked for since

async function load() {
  const filter = $("#filter").value;
  const received = filter === "received";
  const url = received ? "/v1/received" : `/v1/feedback${filter ? `?status=${filter}` : ""}`;
  const ticket = ++loading;
  const response = await fetch(url, { headers: headers() });
  if (ticket !== loading) return;
  const list = $("#items");
  if (response.status === 401) {
    $("#settings").open = true;
    list.replaceChildren();
    return showError("Reviewing needs a key: enter the API key or your teacher token under Settings.");
  }
  if (!response.ok) return showError(await errorText(response));
  showError("");
  const items = (await response.json()).data;
  if (ticket !== loading) return;
  list.replaceChildren(...items.map(received ? renderReceived : render));
  if (!items.length) {
    const empty = document.createElement("p");
    empty.className = "hint";
    empty.textContent = "Nothing here yet.";
    list.append(empty);
  }
}

setUpKeyField(load);
$("#filter").addEventListener("change", load);
load().catch((err) => showError(`Cannot reach the server: ${err.message}`));
