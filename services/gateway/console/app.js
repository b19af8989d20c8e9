// The console's shell: who is signed in, the top bar, and which screen shows.
// Screens live in their own modules; each `mount(main, ctx)` returns a cleanup
// function (streams to abort) that runs when another screen takes its place.

import { api, whenSessionLost } from "./api.js";
import { h, clear, toast } from "./dom.js";
import { mountSignIn, mountPending } from "./auth.js";
import { mountAccount } from "./account.js";
import { mountChat } from "./chat.js";
import { mountFiles } from "./files.js";
import { mountAdmin } from "./admin.js";

const SCREENS = {
  chat: { label: "Chat", mount: mountChat },
  files: { label: "Files", mount: mountFiles },
  account: { label: "Account", mount: mountAccount },
  admin: { label: "Admin", mount: mountAdmin, admin: true },
};

const state = { user: null, cleanup: null, notice: "" };
const main = document.getElementById("main");

function routeName() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0];
  const screen = SCREENS[name];
  if (!screen || (screen.admin && state.user.role !== "admin")) return "chat";
  return name;
}

function leaveScreen() {
  if (state.cleanup) state.cleanup();
  state.cleanup = null;
}

function renderNav(current) {
  const nav = clear(document.getElementById("nav"));
  for (const [name, screen] of Object.entries(SCREENS)) {
    if (screen.admin && state.user.role !== "admin") continue;
    nav.append(
      h("li", {}, h("a", { href: `#/${name}`, "aria-current": name === current ? "page" : null }, screen.label)),
    );
  }
  document.getElementById("me-name").textContent = state.user.name || state.user.email;
}

function render({ focus = true } = {}) {
  leaveScreen();
  const topbar = document.getElementById("topbar");
  clear(main);
  if (!state.user) {
    topbar.hidden = true;
    document.title = "Sign in · ragway";
    state.cleanup = mountSignIn(main, { signedIn, notice: state.notice });
    state.notice = "";
    return;
  }
  if (state.user.role === "pending") {
    topbar.hidden = true;
    document.title = "Waiting for an admin · ragway";
    state.cleanup = mountPending(main, { user: state.user, refresh, signOut });
    return;
  }
  topbar.hidden = false;
  const name = routeName();
  renderNav(name);
  document.title = `${SCREENS[name].label} · ragway`;
  state.cleanup = SCREENS[name].mount(main, { user: state.user, refresh, signOut });
  if (focus) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
}

function signedIn(user) {
  state.user = user;
  if (!location.hash) location.hash = "#/chat";
  render();
}

async function refresh() {
  state.user = await api("GET", "/api/v1/auths/");
  render();
}

async function signOut() {
  leaveScreen();
  // ends the session's token on the server where the gateway has that route
  await api("GET", "/api/v1/auths/signout").catch(() => {});
  await api("DELETE", "/console/session").catch(() => {});
  state.user = null;
  render();
}

whenSessionLost((detail) => {
  if (!state.user) return;
  state.user = null;
  state.notice = `Your session ended (${detail}). Sign in again.`;
  render();
});

async function boot() {
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", () => {
    if (state.user && state.user.role !== "pending") render();
  });
  try {
    state.user = await api("GET", "/api/v1/auths/");
  } catch (error) {
    if (error.status !== 401 && error.status !== 403) toast(error.message, "error");
    state.user = null;
  }
  render({ focus: false });
}

boot();
