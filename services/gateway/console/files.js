// Files and collections: upload with live processing status, read, download, delete;
// collections with their files and who may read them.

import { api, fileCount, hasRoute, listOf, uploadFile, watchFile } from "./api.js";
import { h, field, toast, busy, confirmAction, openDialog, formatBytes, formatTime, announce } from "./dom.js";

const TERMINAL = new Set(["completed", "failed"]);

/** A file's status in words: queued, searchable by keyword, embedding progress, done. */
export function describeStatus(status) {
  const s = status || {};
  switch (s.status) {
    case "completed":
      return "Ready";
    case "failed":
      return `Failed: ${s.error || "it could not be processed"}`;
    case "processing": {
      const parts = ["Processing"];
      if (s.keyword_searchable) parts.push("searchable by keyword");
      if (s.chunks_total) parts.push(`embedded ${s.chunks_done || 0} of ${s.chunks_total} chunks`);
      return parts.join(" · ");
    }
    default:
      return "Queued";
  }
}

function statusCell(status) {
  const s = status || {};
  const kind = s.status || "pending";
  const children = [h("span", { class: `badge status-${kind}` }, describeStatus(s))];
  if (kind === "processing" && s.chunks_total) {
    children.push(h("progress", { max: s.chunks_total, value: s.chunks_done || 0, "aria-label": "Embedding progress" }));
  }
  return children;
}

async function download(file) {
  const response = await api("GET", `/api/v1/files/${encodeURIComponent(file.id)}/content`, undefined, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: file.meta?.name || file.filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function showText(file) {
  const reply = await api("GET", `/api/v1/files/${encodeURIComponent(file.id)}/data/content`);
  openDialog(file.meta?.name || file.filename, h("pre", { class: "file-text" }, reply.content || "(no text)"), { wide: true });
}

export function mountFiles(main, { user }) {
  const watchers = new Set();
  const page = h("div", { class: "page wide" }, h("h1", {}, "Files and collections"));
  const filesSection = h("section", { class: "card", "aria-labelledby": "files-title" }, h("h2", { id: "files-title" }, "Files"));
  const kbSection = h("section", { class: "card", "aria-labelledby": "kb-title" }, h("h2", { id: "kb-title" }, "Collections"));
  page.append(h("div", { class: "two-columns" }, filesSection, kbSection));
  main.append(page);

  // --- files -------------------------------------------------------------------------
  const rows = h("tbody");
  const table = h("div", { class: "table-wrap" }, h("table", { class: "files" },
    h("thead", {}, h("tr", {}, ["Name", "Size", "Status", ""].map((t) => h("th", { scope: "col" }, t)))), rows));
  const empty = h("p", { class: "empty" }, "No files yet. Upload text, Markdown, PDF, DOCX, CSV, JSON or HTML.");
  const input = h("input", { type: "file", multiple: true, id: "upload-input", class: "visually-hidden" });
  const drop = h("label", { class: "dropzone", for: "upload-input" },
    h("strong", {}, "Upload files"), h("span", {}, "Choose files, or drop them here"));
  const live = h("p", { class: "hint", role: "status", "aria-live": "polite" });
  filesSection.append(input, drop, live, empty, table);

  function row(file) {
    const name = file.meta?.name || file.filename;
    const status = h("td", { class: "status" }, statusCell(file.data));
    const text = h("button", { type: "button", class: "small" }, "Text");
    const get = h("button", { type: "button", class: "small" }, "Download");
    const remove = h("button", { type: "button", class: "small danger" }, "Delete");
    text.addEventListener("click", busy(text, () => showText(file)));
    get.addEventListener("click", busy(get, () => download(file)));
    remove.addEventListener("click", busy(remove, async () => {
      if (!(await confirmAction(`Delete “${name}”?`, "Its text and vectors go too, and it leaves every collection.", "Delete"))) return;
      await api("DELETE", `/api/v1/files/${encodeURIComponent(file.id)}`);
      tr.remove();
      toast(`${name} deleted`);
      empty.hidden = rows.children.length > 0;
      table.hidden = !empty.hidden;
    }));
    const tr = h("tr", { "data-file-id": file.id },
      h("th", { scope: "row" }, h("span", { class: "file-name" }, name), h("span", { class: "sub" }, formatTime(file.created_at))),
      h("td", { class: "num" }, formatBytes(file.meta?.size)),
      status,
      h("td", { class: "row-actions" }, text, get, remove));
    if (!TERMINAL.has(file.data?.status)) follow(file.id, name, status);
    return tr;
  }

  function follow(fileId, name, cell) {
    const controller = new AbortController();
    watchers.add(controller);
    watchFile(fileId, (status) => {
      cell.replaceChildren(...statusCell(status));
      if (TERMINAL.has(status.status)) {
        live.textContent = `${name}: ${describeStatus(status)}`;
        refreshCollections().catch(() => {});
      }
    }, controller.signal)
      .catch((error) => {
        if (error.name !== "AbortError") cell.append(h("span", { class: "hint" }, ` (${error.message})`));
      })
      .finally(() => watchers.delete(controller));
  }

  async function loadFiles() {
    const files = listOf(await api("GET", "/api/v1/files/"));
    files.sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
    rows.replaceChildren(...files.map(row));
    empty.hidden = files.length > 0;
    table.hidden = !empty.hidden;
  }

  async function upload(list) {
    for (const file of list) {
      live.textContent = `Uploading ${file.name}…`;
      try {
        const record = await uploadFile(file);
        rows.prepend(row(record));
        empty.hidden = true;
        table.hidden = false;
        live.textContent = `${file.name} uploaded: processing.`;
      } catch (error) {
        live.textContent = "";
        toast(`${file.name}: ${error.message}`, "error");
      }
    }
  }
  input.addEventListener("change", async () => {
    await upload([...input.files]);
    input.value = "";
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    upload([...event.dataTransfer.files]);
  });

  // --- collections -------------------------------------------------------------------
  const kbList = h("ul", { class: "kb-list" });
  const kbName = h("input", { required: true, maxlength: 200 });
  const kbDescription = h("input", { maxlength: 500 });
  const kbCreate = h("button", { type: "submit", class: "primary" }, "Create collection");
  const kbForm = h("form", { class: "inline-form" }, field("Name", kbName), field("Description", kbDescription), kbCreate);
  kbSection.append(kbForm, kbList);
  kbForm.addEventListener("submit", busy(kbCreate, async () => {
    const created = await api("POST", "/api/v1/knowledge/create", {
      name: kbName.value.trim(),
      description: kbDescription.value.trim(),
      access_control: {}, // private until shared
    });
    kbForm.reset();
    toast(`Collection “${created.name}” created`);
    await refreshCollections();
  }));

  async function refreshCollections() {
    const collections = listOf(await api("GET", "/api/v1/knowledge/"));
    if (!collections.length) {
      kbList.replaceChildren(h("li", { class: "empty" }, "No collections yet."));
      return;
    }
    kbList.replaceChildren(...collections.map((kb) => {
      const manage = h("button", { type: "button", class: "small" }, "Open");
      manage.addEventListener("click", busy(manage, () => openCollection(kb.id)));
      return h("li", { class: "kb" },
        h("div", {}, h("strong", {}, kb.name), h("span", { class: "sub" }, kb.description || ""),
          h("span", { class: "sub" }, `${fileCount(kb)} file(s) · ${accessSummary(kb.access_control)}`)),
        manage);
    }));
  }

  async function openCollection(id) {
    const kb = await api("GET", `/api/v1/knowledge/${encodeURIComponent(id)}`);
    const writable = kb.write_access || kb.user_id === user.id || user.role === "admin";
    const body = h("div", { class: "stack" });
    const dialog = openDialog(kb.name, body, { wide: true });
    const redraw = async () => {
      const fresh = await api("GET", `/api/v1/knowledge/${encodeURIComponent(id)}`);
      body.replaceChildren(...(await collectionBody(fresh, writable, redraw, dialog)));
      await refreshCollections();
    };
    body.replaceChildren(...(await collectionBody(kb, writable, redraw, dialog)));
  }

  async function collectionBody(kb, writable, redraw, dialog) {
    const parts = [];
    if (kb.description) parts.push(h("p", {}, kb.description));
    const files = kb.files || [];
    parts.push(h("h3", {}, `Files (${files.length})`));
    parts.push(files.length
      ? h("ul", { class: "kb-files" }, files.map((file) => {
        const remove = writable ? h("button", { type: "button", class: "small danger" }, "Remove") : null;
        if (remove) {
          remove.addEventListener("click", busy(remove, async () => {
            await api("POST", `/api/v1/knowledge/${encodeURIComponent(kb.id)}/file/remove`, { file_id: file.id });
            await redraw();
          }));
        }
        return h("li", {}, h("span", {}, file.meta?.name || file.filename), h("span", { class: `badge status-${file.data?.status}` }, describeStatus(file.data)), remove);
      }))
      : h("p", { class: "empty" }, "No files in this collection."));
    if (!writable) return parts;

    const mine = listOf(await api("GET", "/api/v1/files/")).filter((f) => !files.some((g) => g.id === f.id) && f.data?.status !== "failed");
    const pick = h("select", {}, mine.map((f) => h("option", { value: f.id }, f.meta?.name || f.filename)));
    const add = h("button", { type: "button", class: "primary" }, "Add file");
    add.addEventListener("click", busy(add, async () => {
      if (!pick.value) return;
      await api("POST", `/api/v1/knowledge/${encodeURIComponent(kb.id)}/file/add`, { file_id: pick.value });
      await redraw();
      announce("File added");
    }));
    parts.push(mine.length ? h("div", { class: "inline-form" }, field("Add one of your files", pick), add) : h("p", { class: "hint" }, "Upload files to add them here."));
    parts.push(await accessEditor(kb, redraw));
    const remove = h("button", { type: "button", class: "danger" }, "Delete collection");
    remove.addEventListener("click", busy(remove, async () => {
      if (!(await confirmAction(`Delete “${kb.name}”?`, "The files stay; only the collection goes.", "Delete"))) return;
      await api("DELETE", `/api/v1/knowledge/${encodeURIComponent(kb.id)}/delete`);
      dialog.close();
      toast(`Collection “${kb.name}” deleted`);
      await refreshCollections();
    }));
    parts.push(h("div", { class: "actions start" }, remove));
    return parts;
  }

  async function accessEditor(kb, redraw) {
    const access = kb.access_control;
    const current = access === null || access === undefined ? "public" : grantees(access).length ? "shared" : "private";
    const [groups, users] = await Promise.all([
      hasRoute("/api/v1/groups/").then((present) => (present ? api("GET", "/api/v1/groups/").then(listOf).catch(() => []) : [])),
      user.role === "admin" ? api("GET", "/api/v1/users/").then((r) => listOf(r, "users")).catch(() => []) : Promise.resolve([]),
    ]);
    const readers = new Set(grantees(access));
    const radios = ["private", "public", "shared"].map((value) => {
      const id = `access-${value}`;
      const labels = { private: "Private: you and admins", public: "Everyone signed in can read", shared: "Shared with…" };
      return h("div", { class: "radio" }, h("input", { type: "radio", name: "access", id, value, checked: value === current }), h("label", { for: id }, labels[value]));
    });
    const choices = [
      ...groups.map((g) => ({ key: `group:${g.id}`, label: `Group ${g.name}` })),
      ...users.filter((u) => u.id !== kb.user_id).map((u) => ({ key: `user:${u.id}`, label: `${u.name} (${u.email})` })),
    ];
    const shareList = h("ul", { class: "check-list" }, choices.map((c) => {
      const id = `share-${c.key.replace(":", "-")}`;
      return h("li", {}, h("input", { type: "checkbox", id, value: c.key, checked: readers.has(c.key) }), h("label", { for: id }, c.label));
    }));
    const save = h("button", { type: "button", class: "primary" }, "Save access");
    save.addEventListener("click", busy(save, async () => {
      const mode = document.querySelector("input[name=access]:checked").value;
      let control = {};
      if (mode === "public") control = null;
      if (mode === "shared") {
        const keys = [...shareList.querySelectorAll("input:checked")].map((box) => box.value);
        control = {
          read: {
            user_ids: keys.filter((k) => k.startsWith("user:")).map((k) => k.slice(5)),
            group_ids: keys.filter((k) => k.startsWith("group:")).map((k) => k.slice(6)),
          },
          write: (access && access.write) || { user_ids: [], group_ids: [] },
        };
      }
      await api("POST", `/api/v1/knowledge/${encodeURIComponent(kb.id)}/update`, {
        name: kb.name,
        description: kb.description || "",
        access_control: control,
      });
      toast("Access saved");
      await redraw();
    }));
    return h("fieldset", { class: "access" }, h("legend", {}, "Who may read it"), radios,
      choices.length ? shareList : h("p", { class: "hint" }, "Sharing with particular people needs groups, or an admin's list of users."),
      h("div", { class: "actions start" }, save));
  }

  loadFiles().catch((error) => toast(error.message, "error"));
  refreshCollections().catch((error) => toast(error.message, "error"));
  return () => {
    for (const controller of watchers) controller.abort();
  };
}

function grantees(access) {
  if (!access) return [];
  const out = [];
  for (const grant of [access.read, access.write]) {
    if (!grant) continue;
    for (const id of grant.user_ids || []) out.push(`user:${id}`);
    for (const id of grant.group_ids || []) out.push(`group:${id}`);
  }
  return out;
}

function accessSummary(access) {
  if (access === null || access === undefined) return "everyone can read";
  const count = new Set(grantees(access)).size;
  return count ? `shared with ${count}` : "private";
}
