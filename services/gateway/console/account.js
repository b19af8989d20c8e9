// Settings > Account: profile, password, and API keys (Open WebUI's one key, and
// ragway's named, scoped keys where the gateway has them).

import { api, hasRoute, listOf } from "./api.js";
import { h, field, toast, busy, confirmAction, copyText, formatTime, announce } from "./dom.js";

export function mountAccount(main, { user }) {
  const page = h(
    "div",
    { class: "page" },
    h("h1", {}, "Settings › Account"),
    profileSection(user),
  );
  main.append(page);
  const passwordSlot = h("div");
  page.append(passwordSlot, apiKeySection());
  const namedSlot = h("div");
  page.append(namedSlot);
  hasRoute("/api/v1/auths/update/password").then((present) => {
    if (present) passwordSlot.replaceWith(passwordSection());
  });
  hasRoute("/api/v1/auths/api_keys").then((present) => {
    if (present) namedSlot.replaceWith(namedKeysSection());
  });
  return null;
}

function section(title, ...children) {
  const id = `sec-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), children);
}

function profileSection(user) {
  return section(
    "Profile",
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Name"),
      h("dd", {}, user.name),
      h("dt", {}, "Email"),
      h("dd", {}, user.email),
      h("dt", {}, "Role"),
      h("dd", {}, h("span", { class: `badge role-${user.role}` }, user.role)),
    ),
  );
}

function passwordSection() {
  const current = h("input", { type: "password", autocomplete: "current-password", required: true });
  const fresh = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
  const again = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
  const error = h("p", { class: "form-error", role: "alert" });
  const save = h("button", { class: "primary", type: "submit" }, "Change password");
  const form = h(
    "form",
    { class: "stack narrow" },
    error,
    field("Current password", current),
    field("New password", fresh, "At least 8 characters. Your other sessions are signed out."),
    field("New password again", again),
    h("div", { class: "actions" }, save),
  );
  form.addEventListener(
    "submit",
    busy(save, async () => {
      error.textContent = "";
      if (fresh.value !== again.value) {
        error.textContent = "The new passwords differ.";
        again.focus();
        return;
      }
      await api("POST", "/api/v1/auths/update/password", {
        password: current.value,
        new_password: fresh.value,
      });
      form.reset();
      toast("Password changed");
    }),
  );
  return section("Password", form);
}

/** The full key, shown once, with a copy button and an example call. */
export function revealKey(key) {
  const input = h("input", {
    class: "mono",
    readonly: true,
    value: key,
    "aria-label": "Your new API key",
    id: "new-api-key",
  });
  const copy = h("button", { type: "button", class: "primary" }, "Copy");
  copy.addEventListener("click", async () => {
    const done = await copyText(key, input);
    copy.textContent = done ? "Copied" : "Select and copy it";
    announce(done ? "API key copied to the clipboard" : "Select the key and copy it");
  });
  const example = `curl ${location.origin}/api/models -H "Authorization: Bearer ${key}"`;
  return h(
    "div",
    { class: "key-reveal", role: "group", "aria-label": "New API key" },
    h("p", { class: "warn" }, "Copy this key now: it is shown only once."),
    h("div", { class: "inline" }, input, copy),
    h("p", { class: "hint" }, "Use it as a bearer token wherever an Open WebUI key works, for example:"),
    h("pre", { class: "example" }, h("code", {}, example)),
  );
}

function apiKeySection() {
  const state = h("p", {}, "Checking…");
  const reveal = h("div");
  const create = h("button", { class: "primary", type: "button" }, "Create API key");
  const revoke = h("button", { class: "danger", type: "button", hidden: true }, "Revoke");

  async function load() {
    try {
      const { api_key: hint } = await api("GET", "/api/v1/auths/api_key");
      state.replaceChildren("Your key: ", h("code", { class: "mono" }, hint));
      create.textContent = "Replace key";
      revoke.hidden = false;
    } catch (error) {
      if (error.status !== 404) throw error;
      state.textContent = "You have no API key yet.";
      create.textContent = "Create API key";
      revoke.hidden = true;
    }
  }

  create.addEventListener(
    "click",
    busy(create, async () => {
      if (!revoke.hidden) {
        const sure = await confirmAction(
          "Replace your API key?",
          "The current key stops working at once, everywhere it is used.",
          "Replace key",
        );
        if (!sure) return;
      }
      const { api_key: key } = await api("POST", "/api/v1/auths/api_key");
      reveal.replaceChildren(revealKey(key));
      await load();
      reveal.querySelector("input").focus();
      reveal.querySelector("input").select();
    }),
  );
  revoke.addEventListener(
    "click",
    busy(revoke, async () => {
      const sure = await confirmAction(
        "Revoke your API key?",
        "Every script that uses it is refused from now on.",
        "Revoke key",
      );
      if (!sure) return;
      await api("DELETE", "/api/v1/auths/api_key");
      reveal.replaceChildren();
      toast("API key revoked");
      await load();
    }),
  );
  load().catch((error) => {
    state.textContent = error.message;
  });
  return section(
    "API key",
    h("p", { class: "hint" }, "One key for scripts and SDKs, as in Open WebUI (Settings > Account). It never expires; revoke it when it leaks."),
    state,
    h("div", { class: "actions start" }, create, revoke),
    reveal,
  );
}

function namedKeysSection() {
  const list = h("div", {}, h("p", {}, "Loading…"));
  const reveal = h("div");
  const name = h("input", { required: true, maxlength: 100, placeholder: "e.g. notebook on my laptop" });
  const expires = h("input", { type: "date" });
  const models = h("select", { multiple: true, size: 4 });
  const collections = h("select", { multiple: true, size: 4 });
  const create = h("button", { class: "primary", type: "submit" }, "Create key");
  const form = h(
    "form",
    { class: "grid-form" },
    field("Name", name),
    field("Expires (optional)", expires),
    field("Only these models (optional)", models, "None selected: every model."),
    field("Only these collections (optional)", collections, "None selected: every collection you can read."),
    h("div", { class: "actions start span" }, create),
  );

  async function fillScopes() {
    const [modelReply, knowledge] = await Promise.all([
      api("GET", "/api/models").catch(() => ({ data: [] })),
      api("GET", "/api/v1/knowledge/").catch(() => []),
    ]);
    models.replaceChildren(...listOf(modelReply, "data").map((m) => h("option", { value: m.id }, m.name || m.id)));
    collections.replaceChildren(...listOf(knowledge).map((k) => h("option", { value: k.id }, k.name)));
  }

  async function load() {
    const records = listOf(await api("GET", "/api/v1/auths/api_keys"));
    if (!records.length) {
      list.replaceChildren(h("p", { class: "empty" }, "No named keys yet."));
      return;
    }
    const rows = records.map((record) => {
      const revoke = h("button", { class: "danger small", type: "button" }, "Revoke");
      revoke.addEventListener(
        "click",
        busy(revoke, async () => {
          const sure = await confirmAction(`Revoke “${record.name}”?`, "It is refused from now on.", "Revoke key");
          if (!sure) return;
          await api("DELETE", `/api/v1/auths/api_keys/${encodeURIComponent(record.id)}`);
          toast(`Key “${record.name}” revoked`);
          await load();
        }),
      );
      const scope = [
        record.models && record.models.length ? `models: ${record.models.join(", ")}` : "",
        record.collections && record.collections.length ? `${record.collections.length} collection(s)` : "",
      ]
        .filter(Boolean)
        .join("; ");
      return h(
        "tr",
        {},
        h("th", { scope: "row" }, record.name || record.id),
        h("td", { class: "mono" }, record.hint || record.prefix || record.key_hint || ""),
        h("td", {}, scope || "everything"),
        h("td", {}, formatTime(record.created_at)),
        h("td", {}, record.expires_at ? formatTime(record.expires_at) : "never"),
        h("td", {}, revoke),
      );
    });
    list.replaceChildren(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["Name", "Key", "Scope", "Created", "Expires", ""].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows),
        ),
      ),
    );
  }

  form.addEventListener(
    "submit",
    busy(create, async () => {
      const body = { name: name.value.trim() };
      if (expires.value) body.expires_at = Math.floor(new Date(`${expires.value}T23:59:59`).getTime() / 1000);
      const chosenModels = [...models.selectedOptions].map((o) => o.value);
      const chosenCollections = [...collections.selectedOptions].map((o) => o.value);
      if (chosenModels.length) body.models = chosenModels;
      if (chosenCollections.length) body.collections = chosenCollections;
      const reply = await api("POST", "/api/v1/auths/api_keys", body);
      const key = reply.api_key || reply.key || reply.secret;
      reveal.replaceChildren(revealKey(key));
      form.reset();
      await load();
      reveal.querySelector("input").focus();
    }),
  );
  fillScopes();
  load().catch((error) => list.replaceChildren(h("p", { class: "form-error" }, error.message)));
  return section(
    "Named keys",
    h("p", { class: "hint" }, "Keys with a name, an optional expiry, and a scope: a scoped key is refused outside its models and collections."),
    list,
    h("h3", {}, "New key"),
    form,
    reveal,
  );
}
