// Building the page with DOM calls only: text goes in as text nodes, never as HTML,
// so nothing a model, a file or another user wrote can become markup or script.

/**
 * h("button", {class: "primary", onclick: fn, "aria-label": "Close"}, "child", node)
 * Attributes starting with "on" become listeners; `false`/`null` ones are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "value" || name === "checked" || name === "selected") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

let uid = 0;
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: <div class="field"><label for=id>…</label>input hint</div>. */
export function field(label, input, hint) {
  if (!input.id) input.id = nextId();
  const parts = [h("label", { for: input.id }, label), input];
  if (hint) {
    const hintId = nextId("hint");
    input.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** Says `message` to screen readers through the page's polite live region. */
export function announce(message) {
  const region = document.getElementById("status");
  region.textContent = "";
  // a new text node a moment later is announced even when the words repeat
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/** A short message in the corner, also announced. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : null }, message);
  box.append(item);
  if (kind !== "error") announce(message);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** A modal <dialog> with a title and a close button; removed from the page when closed. */
export function openDialog(title, body, { wide = false } = {}) {
  const titleId = nextId("dlg");
  const close = h("button", { class: "icon-button", type: "button", "aria-label": "Close" }, "\u00d7");
  const dialog = h(
    "dialog",
    { class: wide ? "wide" : "", "aria-labelledby": titleId },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, title), close),
    h("div", { class: "dialog-body" }, body),
  );
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Asks for confirmation in a modal; resolves true when confirmed. */
export function confirmAction(title, message, confirmLabel = "Confirm") {
  return new Promise((resolve) => {
    let confirmed = false;
    const yes = h("button", { class: "danger", type: "button" }, confirmLabel);
    const no = h("button", { type: "button" }, "Cancel");
    const dialog = openDialog(title, [
      h("p", {}, message),
      h("div", { class: "actions" }, no, yes),
    ]);
    yes.addEventListener("click", () => {
      confirmed = true;
      dialog.close();
    });
    no.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => resolve(confirmed));
    no.focus();
  });
}

export function formatBytes(size) {
  if (!Number.isFinite(size)) return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 && unit ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** Epoch seconds (or milliseconds, or nanoseconds) as a short local date and time. */
export function formatTime(stamp) {
  if (!stamp) return "";
  let ms = Number(stamp);
  if (ms > 1e17) ms /= 1e6;
  else if (ms < 1e12) ms *= 1000;
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Copies text; falls back to selecting it where the clipboard API is not allowed. */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (input) {
      input.select();
      return document.execCommand("copy");
    }
    return false;
  }
}

/** A button that shows it is busy while `action` runs, and reports its error. */
export function busy(button, action) {
  return async (event) => {
    if (event) event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await action();
    } catch (error) {
      toast(error.message || String(error), "error");
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  };
}
