// The review page: every teacher's feedback with the conversation, the reply and its pedagogy flags;
// approve (with an edited better reply) or reject each item. Only approved items are exported for training.
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

function render(item) {
  const node = $("#item-template").content.firstElementChild.cloneNode(true);
  fill(node, item);
  const conversation = $(".conversation", node);
  for (const message of item.messages.filter((m) => m.role !== "system")) {
    const turn = document.createElement("li");
    turn.className = `turn ${message.role}`;
    turn.textContent = message.content;
    conversation.append(turn);
  }
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

async function load() {
  const filter = $("#filter").value;
  const response = await fetch(`/v1/feedback${filter ? `?status=${filter}` : ""}`, { headers: headers() });
  const list = $("#items");
  if (response.status === 401) {
    $("#settings").open = true;
    list.replaceChildren();
    return showError("Reviewing needs a key: enter the API key or your teacher token under Settings.");
  }
  if (!response.ok) return showError(await errorText(response));
  showError("");
  const items = (await response.json()).data;
  list.replaceChildren(...items.map(render));
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
