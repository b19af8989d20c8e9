// Chat: pick a model or preset, stream the answer, attach files and collections,
// show `sources` as numbered citations, keep the conversation as a chat (chat_id).

import { api, fileCount, events, listOf, uploadFile, watchFile } from "./api.js";
import { h, clear, toast, announce, openDialog, confirmAction, formatTime, busy } from "./dom.js";

const MODEL_KEY = "ragway.console.model";

/** Every chunk of a completion's `sources`, numbered 1..n as the RAG prompt numbers them. */
export function numberedSources(sources) {
  const out = [];
  for (const entry of sources || []) {
    const documents = entry.document || [];
    documents.forEach((text, index) => {
      out.push({
        n: out.length + 1,
        text,
        meta: (entry.metadata || [])[index] || {},
        source: entry.source || {},
        distance: (entry.distances || [])[index],
        indexing: Boolean(entry.indexing),
      });
    });
  }
  return out;
}

function sourceLabel(item) {
  const meta = item.meta;
  const parts = [meta.name || meta.source || item.source.name || "source"];
  if (meta.page_label !== undefined || meta.page !== undefined) {
    parts.push(`p. ${meta.page_label ?? Number(meta.page) + 1}`);
  }
  if (meta.chunk_index !== undefined) parts.push(`chunk ${Number(meta.chunk_index) + 1}`);
  return parts.join(" · ");
}

function openSource(item) {
  const meta = item.meta;
  const facts = [
    ["File", meta.name || item.source.name],
    ["From", item.source.type === "collection" ? `collection “${item.source.name}”` : null],
    ["Page", meta.page_label ?? (meta.page !== undefined ? Number(meta.page) + 1 : null)],
    ["Chunk", meta.chunk_index !== undefined ? Number(meta.chunk_index) + 1 : null],
    ["Offset", meta.start_index ?? meta.offset ?? null],
    ["Score", typeof item.distance === "number" ? item.distance.toFixed(3) : null],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  openDialog(`Source [${item.n}]`, [
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
    item.indexing ? h("p", { class: "hint" }, "This file was still being embedded: found by keywords.") : null,
    h("blockquote", { class: "chunk" }, item.text),
  ], { wide: true });
}

/** Answer text as paragraphs and code blocks, `[n]` turned into citation buttons. */
export function renderAnswer(text, sources) {
  const numbered = numberedSources(sources);
  const nodes = [];
  const fence = /```[^\n]*\n([\s\S]*?)(?:```|$)/g;
  let last = 0;
  let match;
  while ((match = fence.exec(text)) !== null) {
    nodes.push(...paragraphs(text.slice(last, match.index), numbered));
    nodes.push(h("pre", { class: "code" }, h("code", {}, match[1])));
    last = fence.lastIndex;
  }
  nodes.push(...paragraphs(text.slice(last), numbered));
  return nodes;
}

function paragraphs(text, numbered) {
  return text
    .split(/\n{2,}/)
    .filter((block) => block.trim())
    .map((block) => h("p", {}, withCitations(block, numbered)));
}

function withCitations(text, numbered) {
  const parts = [];
  const cite = /\[(\d+)\]/g;
  let last = 0;
  let match;
  while ((match = cite.exec(text)) !== null) {
    const item = numbered[Number(match[1]) - 1];
    if (!item) continue;
    parts.push(text.slice(last, match.index));
    parts.push(
      h("button", {
        type: "button",
        class: "cite",
        "aria-label": `Source ${item.n}: ${sourceLabel(item)}`,
        onclick: () => openSource(item),
      }, String(item.n)),
    );
    last = cite.lastIndex;
  }
  parts.push(text.slice(last));
  return parts;
}

function sourcesList(sources) {
  const numbered = numberedSources(sources);
  if (!numbered.length) return null;
  return h(
    "div",
    { class: "sources" },
    h("h3", {}, "Sources"),
    h(
      "ol",
      {},
      numbered.map((item) =>
        h("li", {}, h("button", { type: "button", class: "source", onclick: () => openSource(item) },
          h("span", { class: "source-n" }, String(item.n)), sourceLabel(item))),
      ),
    ),
  );
}

function messageFrom(node) {
  const content = typeof node.content === "string" ? node.content
    : Array.isArray(node.content) ? node.content.map((p) => p.text || "").join("") : "";
  return { role: node.role, content, sources: node.sources || null, model: node.model || "" };
}

/** The messages of a stored chat, root to its current leaf. */
export function messagesOf(record) {
  const chat = record.chat || {};
  const history = chat.history;
  if (history && history.messages && history.currentId) {
    const path = [];
    let id = history.currentId;
    const seen = new Set();
    while (id && history.messages[id] && !seen.has(id)) {
      seen.add(id);
      path.push(history.messages[id]);
      id = history.messages[id].parentId;
    }
    return path.reverse().map(messageFrom);
  }
  return (chat.messages || []).map(messageFrom);
}

export function mountChat(main, { user }) {
  const state = {
    chatId: location.hash.split("/")[2] || null,
    messages: [],
    attachments: [],
    stream: null,
    watchers: new Set(),
  };

  const modelSelect = h("select", { id: "model", "aria-label": "Model" });
  const chatList = h("ul", { class: "chat-list" });
  const title = h("h1", { class: "chat-title" }, "New chat");
  const log = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
  const chips = h("ul", { class: "chips", "aria-label": "Attached to this chat" });
  const prompt = h("textarea", {
    id: "prompt",
    rows: 1,
    placeholder: "Ask something…",
    "aria-describedby": "prompt-keys",
  });
  const attach = h("button", { type: "button", class: "ghost", "aria-haspopup": "dialog" }, "Attach");
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", class: "danger", hidden: true }, "Stop");
  const composer = h(
    "form",
    { class: "composer", "aria-label": "New message" },
    chips,
    h("div", { class: "composer-row" },
      attach,
      h("label", { for: "prompt", class: "visually-hidden" }, "Message"),
      h("span", { id: "prompt-keys", class: "visually-hidden" }, "Enter sends; Shift+Enter starts a new line."),
      prompt, send, stop),
  );
  const sideToggle = h("button", { type: "button", class: "ghost side-toggle", "aria-expanded": "false", "aria-controls": "chat-side" }, "Chats");
  const newChat = h("button", { type: "button", class: "primary wide" }, "New chat");
  const side = h("aside", { class: "chat-side", id: "chat-side", "aria-label": "Chats" }, newChat, chatList);
  const layout = h(
    "div",
    { class: "chat-layout" },
    side,
    h("section", { class: "chat-main", "aria-labelledby": "chat-title" },
      h("div", { class: "chat-head" }, sideToggle, title,
        h("div", { class: "model-pick" }, h("label", { for: "model" }, "Model"), modelSelect)),
      log,
      composer),
  );
  title.id = "chat-title";
  main.append(layout);
  main.classList.add("full");

  sideToggle.addEventListener("click", () => {
    const open = side.classList.toggle("open");
    sideToggle.setAttribute("aria-expanded", String(open));
  });

  // --- models ------------------------------------------------------------------------
  async function loadModels() {
    const reply = await api("GET", "/api/models");
    const models = listOf(reply, "data").filter((m) => m.type !== "embedding" && !(m.info && m.info.is_active === false));
    const presets = models.filter((m) => m.info);
    const plain = models.filter((m) => !m.info);
    const option = (m) => h("option", { value: m.id }, m.name && m.name !== m.id ? `${m.name} (${m.id})` : m.id);
    modelSelect.replaceChildren(
      ...(presets.length ? [h("optgroup", { label: "Presets" }, presets.map(option))] : []),
      ...(plain.length ? [h("optgroup", { label: "Models" }, plain.map(option))] : []),
    );
    if (!models.length) {
      modelSelect.append(h("option", { value: "" }, "No models: configure a backend"));
      return;
    }
    const wanted = localStorage.getItem(MODEL_KEY);
    if (wanted && models.some((m) => m.id === wanted)) modelSelect.value = wanted;
  }
  modelSelect.addEventListener("change", () => localStorage.setItem(MODEL_KEY, modelSelect.value));

  // --- chat list ---------------------------------------------------------------------
  async function loadList() {
    const chats = listOf(await api("GET", "/api/v1/chats/"));
    if (!chats.length) {
      chatList.replaceChildren(h("li", { class: "empty" }, "No chats yet."));
      return;
    }
    chatList.replaceChildren(
      ...chats.map((chat) => {
        const open = h("button", {
          type: "button",
          class: "chat-link",
          "aria-current": chat.id === state.chatId ? "true" : null,
        }, h("span", { class: "chat-link-title" }, chat.title || "Untitled"), h("span", { class: "chat-link-time" }, formatTime(chat.updated_at)));
        open.addEventListener("click", () => openChat(chat.id));
        const remove = h("button", { type: "button", class: "icon-button", "aria-label": `Delete chat “${chat.title}”` }, "\u00d7");
        remove.addEventListener("click", busy(remove, async () => {
          if (!(await confirmAction("Delete this chat?", `“${chat.title}” and its messages are deleted.`, "Delete"))) return;
          await api("DELETE", `/api/v1/chats/${encodeURIComponent(chat.id)}`);
          if (chat.id === state.chatId) startNew();
          await loadList();
        }));
        return h("li", {}, open, remove);
      }),
    );
  }

  function setChatId(id) {
    state.chatId = id;
    history.replaceState(null, "", id ? `#/chat/${id}` : "#/chat");
  }

  function startNew() {
    stopStream();
    setChatId(null);
    state.messages = [];
    clear(log).append(emptyState());
    title.textContent = "New chat";
    loadList().catch(() => {});
    prompt.focus();
  }

  async function openChat(id) {
    stopStream();
    const record = await api("GET", `/api/v1/chats/${encodeURIComponent(id)}`);
    setChatId(record.id);
    title.textContent = record.title || "Chat";
    state.messages = messagesOf(record);
    clear(log);
    for (const message of state.messages) log.append(messageNode(message));
    if (!state.messages.length) log.append(emptyState());
    const lastModel = [...state.messages].reverse().find((m) => m.model)?.model;
    if (lastModel && [...modelSelect.options].some((o) => o.value === lastModel)) modelSelect.value = lastModel;
    side.classList.remove("open");
    sideToggle.setAttribute("aria-expanded", "false");
    log.scrollTop = log.scrollHeight;
    await loadList();
  }

  function emptyState() {
    return h("div", { class: "empty-chat" },
      h("p", { class: "lead" }, `Hello ${user.name || ""}.`),
      h("p", {}, "Pick a model, attach files or collections to ground the answer in them, and ask."));
  }

  // --- messages ----------------------------------------------------------------------
  function messageNode(message) {
    const body = h("div", { class: "msg-body" });
    const node = h("article", { class: `msg ${message.role}` },
      h("h2", { class: "msg-who" }, message.role === "user" ? "You" : message.model || "Assistant"),
      body);
    fillBody(body, message);
    return node;
  }

  function fillBody(body, message) {
    if (message.role === "user") {
      body.replaceChildren(...message.content.split(/\n{2,}/).map((p) => h("p", {}, p)));
      return;
    }
    body.replaceChildren(...renderAnswer(message.content, message.sources));
    const list = sourcesList(message.sources);
    if (list) body.append(list);
  }

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  // --- sending and streaming ---------------------------------------------------------
  function stopStream() {
    if (state.stream) state.stream.abort();
  }

  function streaming(on) {
    send.hidden = on;
    stop.hidden = !on;
    log.setAttribute("aria-busy", String(on));
    if (!on && document.activeElement === stop) prompt.focus();
  }

  async function ask(text) {
    await modelsLoaded; // a question typed before the list came waits for it
    const model = modelSelect.value;
    if (!model) {
      toast("Pick a model first", "error");
      return;
    }
    if (!state.chatId) {
      const record = await api("POST", "/api/v1/chats/new", {
        chat: { title: text.slice(0, 60), models: [model] },
      });
      setChatId(record.id);
      title.textContent = record.title || text.slice(0, 60);
      loadList().catch(() => {});
    }
    const empty = log.querySelector(".empty-chat");
    if (empty) empty.remove();
    const question = { role: "user", content: text };
    state.messages.push(question);
    log.append(messageNode(question));
    const answer = { role: "assistant", content: "", sources: null, model };
    const node = messageNode(answer);
    const body = node.querySelector(".msg-body");
    body.append(h("p", { class: "typing" }, "Thinking…"));
    node.classList.add("streaming");
    log.append(node);
    log.scrollTop = log.scrollHeight;

    const controller = new AbortController();
    state.stream = controller;
    streaming(true);
    announce("Generating the answer");
    let error = "";
    let stopped = false;
    let frame = 0;
    const paint = () => {
      frame = 0;
      const follow = nearBottom();
      fillBody(body, answer);
      if (follow) log.scrollTop = log.scrollHeight;
    };
    try {
      const request = {
        model,
        stream: true,
        chat_id: state.chatId,
        messages: state.messages.map(({ role, content }) => ({ role, content })),
      };
      if (state.attachments.length) request.files = state.attachments.map(({ type, id }) => ({ type, id }));
      const response = await api("POST", "/api/chat/completions", request, { signal: controller.signal, raw: true });
      for await (const data of events(response)) {
        if (data === "[DONE]") break;
        const event = JSON.parse(data);
        if (event.sources) answer.sources = event.sources;
        if (event.error) error = event.error.message || "The model failed";
        const choice = event.choices && event.choices[0];
        if (choice && choice.delta && typeof choice.delta.content === "string") answer.content += choice.delta.content;
        if (event.model) answer.model = event.model;
        if (!frame) frame = requestAnimationFrame(paint);
      }
    } catch (failure) {
      if (failure.name === "AbortError") stopped = true;
      else error = failure.message;
    } finally {
      if (frame) cancelAnimationFrame(frame);
      state.stream = null;
      node.classList.remove("streaming");
      fillBody(body, answer);
      node.querySelector(".msg-who").textContent = answer.model || "Assistant";
      streaming(false);
    }
    if (error && !answer.content) {
      state.messages.pop(); // not answered: not part of the conversation sent next time
      node.classList.add("failed");
      body.replaceChildren(h("p", { class: "form-error", role: "alert" }, error));
      return;
    }
    state.messages.push(answer);
    if (error) body.append(h("p", { class: "form-error", role: "alert" }, error));
    if (stopped) {
      body.append(h("p", { class: "hint" }, "Stopped. A stopped answer is not saved in the chat."));
      announce("Stopped");
    } else {
      announce("Answer complete");
    }
  }

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || state.stream) return;
    prompt.value = "";
    autosize();
    try {
      await ask(text);
    } catch (error) {
      toast(error.message, "error");
    }
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  function autosize() {
    prompt.style.height = "auto";
    prompt.style.height = `${Math.min(prompt.scrollHeight, 200)}px`;
  }
  prompt.addEventListener("input", autosize);
  stop.addEventListener("click", stopStream);
  newChat.addEventListener("click", startNew);

  // --- attachments -------------------------------------------------------------------
  function renderChips() {
    chips.replaceChildren(
      ...state.attachments.map((item) => {
        const remove = h("button", { type: "button", class: "icon-button", "aria-label": `Remove ${item.name}` }, "\u00d7");
        remove.addEventListener("click", () => {
          state.attachments = state.attachments.filter((a) => a !== item);
          renderChips();
          prompt.focus();
        });
        const status = item.status && item.status !== "completed" ? h("span", { class: `chip-status ${item.status}` }, item.status) : null;
        return h("li", { class: `chip ${item.type}` },
          h("span", { class: "chip-kind" }, item.type === "collection" ? "Collection" : "File"),
          h("span", { class: "chip-name" }, item.name), status, remove);
      }),
    );
  }

  function follow(item) {
    if (item.status === "completed" || item.status === "failed") return;
    const controller = new AbortController();
    state.watchers.add(controller);
    watchFile(item.id, (status) => {
      item.status = status.status;
      renderChips();
    }, controller.signal).catch(() => {}).finally(() => state.watchers.delete(controller));
  }

  async function openAttach() {
    const [files, collections] = await Promise.all([
      api("GET", "/api/v1/files/"),
      api("GET", "/api/v1/knowledge/"),
    ]);
    const chosen = new Set(state.attachments.map((a) => `${a.type}:${a.id}`));
    const fileBoxes = h("ul", { class: "check-list" });
    const addFileBox = (file, checked) => {
      const id = `att-file-${file.id}`;
      fileBoxes.prepend(h("li", {},
        h("input", { type: "checkbox", id, value: file.id, checked, "data-kind": "file", "data-name": file.meta?.name || file.filename, "data-status": file.data?.status || "" }),
        h("label", { for: id }, file.meta?.name || file.filename, h("span", { class: "hint" }, ` ${file.data?.status || ""}`))));
    };
    listOf(files).slice().reverse().forEach((f) => addFileBox(f, chosen.has(`file:${f.id}`)));
    const collectionBoxes = h("ul", { class: "check-list" },
      listOf(collections).map((k) => {
        const id = `att-kb-${k.id}`;
        return h("li", {},
          h("input", { type: "checkbox", id, value: k.id, checked: chosen.has(`collection:${k.id}`), "data-kind": "collection", "data-name": k.name }),
          h("label", { for: id }, k.name, h("span", { class: "hint" }, ` ${fileCount(k)} file(s)`)));
      }));
    const upload = h("input", { type: "file", multiple: true, id: "attach-upload" });
    const uploadNote = h("p", { class: "hint", role: "status" });
    upload.addEventListener("change", async () => {
      for (const file of upload.files) {
        uploadNote.textContent = `Uploading ${file.name}…`;
        try {
          const record = await uploadFile(file);
          addFileBox(record, true);
          uploadNote.textContent = `${file.name} uploaded; it is processed in the background.`;
        } catch (error) {
          uploadNote.textContent = `${file.name}: ${error.message}`;
        }
      }
      upload.value = "";
    });
    const done = h("button", { type: "button", class: "primary" }, "Attach selected");
    const dialog = openDialog("Attach to this chat", [
      h("fieldset", {}, h("legend", {}, "Collections"),
        collectionBoxes.children.length ? collectionBoxes : h("p", { class: "empty" }, "No collections yet.")),
      h("fieldset", {}, h("legend", {}, "Files"), fileBoxes,
        h("div", { class: "field" }, h("label", { for: "attach-upload" }, "Upload new files"), upload, uploadNote)),
      h("div", { class: "actions" }, done),
    ], { wide: true });
    done.addEventListener("click", () => {
      const boxes = dialog.querySelectorAll("input[type=checkbox]:checked");
      const previous = new Map(state.attachments.map((a) => [`${a.type}:${a.id}`, a]));
      state.attachments = [...boxes].map((box) => previous.get(`${box.dataset.kind}:${box.value}`) || {
        type: box.dataset.kind, id: box.value, name: box.dataset.name, status: box.dataset.status || null,
      });
      state.attachments.forEach(follow);
      renderChips();
      dialog.close();
      announce(`${state.attachments.length} attached`);
      prompt.focus();
    });
  }
  attach.addEventListener("click", busy(attach, openAttach));

  // --- start -------------------------------------------------------------------------
  log.append(emptyState());
  const modelsLoaded = loadModels().catch((error) => toast(`Models: ${error.message}`, "error"));
  if (state.chatId) openChat(state.chatId).catch((error) => { toast(error.message, "error"); startNew(); });
  else loadList().catch(() => {});
  return () => {
    stopStream();
    for (const controller of state.watchers) controller.abort();
    main.classList.remove("full");
  };
}
