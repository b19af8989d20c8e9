// Admin: users (activate pending accounts, change roles, delete) and, where the gateway
// has them, groups and their members.

import { api, hasRoute, listOf } from "./api.js";
import { h, field, toast, busy, confirmAction, openDialog, formatTime } from "./dom.js";

const ROLES = ["pending", "user", "admin"];

export function mountAdmin(main, { user: me }) {
  const page = h("div", { class: "page wide" }, h("h1", {}, "Admin"));
  const usersSection = h("section", { class: "card", "aria-labelledby": "users-title" }, h("h2", { id: "users-title" }, "Users"));
  const rows = h("tbody");
  const pendingNote = h("p", { class: "notice", hidden: true, role: "status" });
  usersSection.append(pendingNote, h("div", { class: "table-wrap" }, h("table", { class: "users" },
    h("thead", {}, h("tr", {}, ["Name", "Email", "Role", "Joined", ""].map((t) => h("th", { scope: "col" }, t)))), rows)));
  page.append(usersSection);
  main.append(page);
  let users = [];

  async function setRole(user, role) {
    await api("POST", `/api/v1/users/${encodeURIComponent(user.id)}/update`, { role });
    toast(`${user.name || user.email} is now ${role === "user" ? "an active user" : role}`);
    await loadUsers();
  }

  function row(user) {
    const self = user.id === me.id;
    const select = h("select", { "aria-label": `Role of ${user.name || user.email}`, disabled: self },
      ROLES.map((r) => h("option", { value: r, selected: r === user.role }, r)));
    select.addEventListener("change", busy(select, () => setRole(user, select.value)));
    const actions = [];
    if (user.role === "pending") {
      const activate = h("button", { type: "button", class: "primary small" }, "Activate");
      activate.addEventListener("click", busy(activate, () => setRole(user, "user")));
      actions.push(activate);
    }
    if (!self) {
      const remove = h("button", { type: "button", class: "danger small" }, "Delete");
      remove.addEventListener("click", busy(remove, async () => {
        if (!(await confirmAction(`Delete ${user.name || user.email}?`, "The account and its keys stop working at once.", "Delete user"))) return;
        await api("DELETE", `/api/v1/users/${encodeURIComponent(user.id)}`);
        toast(`${user.email} deleted`);
        await loadUsers();
      }));
      actions.push(remove);
    }
    return h("tr", { class: user.role === "pending" ? "pending" : null, "data-user-id": user.id },
      h("th", { scope: "row" }, user.name, self ? h("span", { class: "sub" }, "you") : null),
      h("td", {}, user.email),
      h("td", {}, select),
      h("td", {}, formatTime(user.created_at)),
      h("td", { class: "row-actions" }, actions));
  }

  async function loadUsers() {
    users = listOf(await api("GET", "/api/v1/users/"), "users");
    const order = { pending: 0, admin: 1, user: 2 };
    users.sort((a, b) => (order[a.role] ?? 3) - (order[b.role] ?? 3) || (a.created_at || 0) - (b.created_at || 0));
    rows.replaceChildren(...users.map(row));
    const waiting = users.filter((u) => u.role === "pending").length;
    pendingNote.hidden = waiting === 0;
    pendingNote.textContent = `${waiting} account${waiting === 1 ? " is" : "s are"} waiting for activation.`;
  }

  loadUsers().catch((error) => toast(error.message, "error"));
  hasRoute("/api/v1/groups/").then((present) => {
    if (present) page.append(groupsSection(() => users));
  });
  return null;
}

function groupsSection(currentUsers) {
  const list = h("ul", { class: "kb-list" });
  const name = h("input", { required: true, maxlength: 100 });
  const description = h("input", { maxlength: 500 });
  const create = h("button", { type: "submit", class: "primary" }, "Create group");
  const form = h("form", { class: "inline-form" }, field("Name", name), field("Description", description), create);
  form.addEventListener("submit", busy(create, async () => {
    await api("POST", "/api/v1/groups/create", { name: name.value.trim(), description: description.value.trim() });
    form.reset();
    toast("Group created");
    await load();
  }));

  async function members(group) {
    const users = currentUsers();
    const inGroup = new Set(group.user_ids || []);
    const boxes = h("ul", { class: "check-list" }, users.map((u) => {
      const id = `member-${u.id}`;
      return h("li", {}, h("input", { type: "checkbox", id, value: u.id, checked: inGroup.has(u.id) }), h("label", { for: id }, `${u.name} (${u.email})`));
    }));
    const save = h("button", { type: "button", class: "primary" }, "Save members");
    const dialog = openDialog(`Members of ${group.name}`, [boxes, h("div", { class: "actions" }, save)]);
    save.addEventListener("click", busy(save, async () => {
      const chosen = new Set([...boxes.querySelectorAll("input:checked")].map((b) => b.value));
      const added = [...chosen].filter((id) => !inGroup.has(id));
      const removed = [...inGroup].filter((id) => !chosen.has(id));
      const base = `/api/v1/groups/id/${encodeURIComponent(group.id)}`;
      if (added.length) await api("POST", `${base}/users/add`, { user_ids: added });
      if (removed.length) await api("POST", `${base}/users/remove`, { user_ids: removed });
      dialog.close();
      toast("Members saved");
      await load();
    }));
  }

  async function load() {
    const groups = listOf(await api("GET", "/api/v1/groups/"));
    if (!groups.length) {
      list.replaceChildren(h("li", { class: "empty" }, "No groups yet."));
      return;
    }
    list.replaceChildren(...groups.map((group) => {
      const edit = h("button", { type: "button", class: "small" }, "Members");
      edit.addEventListener("click", () => members(group));
      const remove = h("button", { type: "button", class: "small danger" }, "Delete");
      remove.addEventListener("click", busy(remove, async () => {
        if (!(await confirmAction(`Delete group ${group.name}?`, "Its members lose what was shared with the group.", "Delete group"))) return;
        await api("DELETE", `/api/v1/groups/id/${encodeURIComponent(group.id)}/delete`);
        await load();
      }));
      return h("li", { class: "kb" },
        h("div", {}, h("strong", {}, group.name), h("span", { class: "sub" }, group.description || ""),
          h("span", { class: "sub" }, `${(group.user_ids || []).length} member(s)`)),
        h("div", { class: "row-actions" }, edit, remove));
    }));
  }
  load().catch((error) => list.replaceChildren(h("li", { class: "form-error" }, error.message)));
  return h("section", { class: "card", "aria-labelledby": "groups-title" }, h("h2", { id: "groups-title" }, "Groups"), form, list);
}
