// What the tutor page and the review page share: the key, error text, how replies and flags are shown.
// Model and student text is only ever placed with textContent, so it can never inject markup into a page.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const auth = { key: localStorage.getItem("edulora-key") || "" };

function headers() {
  const h = { "Content-Type": "application/json" };
  if (auth.key) h.Authorization = `Bearer ${auth.key}`;
  return h;
}

// The API key / teacher token field under Settings; calls onChange after the key changed.
function setUpKeyField(onChange) {
  $("#key").value = auth.key;
  $("#key").addEventListener("change", (event) => {
    const key = event.target.value.trim();
    if (key === auth.key) return;  // a reload would replace what the teacher is editing
    auth.key = key;
    localStorage.setItem("edulora-key", auth.key);
    onChange();
  });
}

function showError(text) {
  const box = $("#error");
  box.textContent = text || "";
  box.hidden = !text;
}

async function errorText(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

const SUPERSCRIPTS = { 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹", "-": "⁻" };

// A reply as it is shown: no blank lines before or after it, at most one blank line in a row, and
// exponents written the way students see them ("cm^2" as "cm²", "10^{-3}" as "10⁻³"). The stored
// reply is untouched; this is display only.
function displayText(text) {
  return text
    .replace(/\r\n?/g, "\n")
    .replace(/[ \t]+\n/g, "\n")
    .replace(/\n{3,}/g, "\n\n")
    .replace(/\^\{?(-?\d{1,3})\}?/g, (_, power) => [...power].map((c) => SUPERSCRIPTS[c]).join(""))
    .trim();
}

// The reply's pedagogy flags as a list: each flag's label, and the sentence that earned it.
function showFlags(list, flags) {
  list.replaceChildren();
  for (const flag of flags) {
    const item = document.createElement("li");
    item.className = `flag flag-${flag.code}`;
    item.dataset.code = flag.code;
    const label = document.createElement("strong");
    label.textContent = flag.label;
    item.append(label);
    if (flag.evidence) {
      const evidence = document.createElement("q");
      evidence.textContent = flag.evidence;
      item.append(" ", evidence);
    }
    list.append(item);
  }
  if (!flags.length) {
    const item = document.createElement("li");
    item.className = "flag none";
    item.textContent = "no pedagogy flags";
    list.append(item);
  }
  list.hidden = false;
}
