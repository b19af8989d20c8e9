// Sign in, create an account, and the page a `pending` user waits on.

import { api } from "./api.js";
import { h, field, announce } from "./dom.js";

export function mountSignIn(main, { signedIn, notice }) {
  let mode = "signin";
  const heading = h("h1", {}, "Sign in");
  const error = h("p", { class: "form-error", role: "alert" });
  const name = h("input", { name: "name", autocomplete: "name", required: true });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    minlength: 1,
  });
  const nameField = field("Name", name);
  const submit = h("button", { class: "primary wide", type: "submit" }, "Sign in");
  const switcher = h("button", { type: "button", class: "link" });
  const prompt = h("p", { class: "switch" });
  const form = h(
    "form",
    { class: "stack", novalidate: false },
    error,
    nameField,
    field("Email", email),
    field("Password", password),
    submit,
  );

  function show(next) {
    mode = next;
    const signup = mode === "signup";
    heading.textContent = signup ? "Create your account" : "Sign in";
    nameField.hidden = !signup;
    name.required = signup;
    password.autocomplete = signup ? "new-password" : "current-password";
    password.minLength = signup ? 8 : 1;
    submit.textContent = signup ? "Create account" : "Sign in";
    prompt.replaceChildren(signup ? "Already have an account? " : "New here? ", switcher);
    switcher.textContent = signup ? "Sign in" : "Create an account";
    error.textContent = "";
  }

  switcher.addEventListener("click", () => {
    show(mode === "signin" ? "signup" : "signin");
    (mode === "signup" ? name : email).focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      const body = { email: email.value.trim(), password: password.value };
      if (mode === "signup") body.name = name.value.trim();
      const user = await api("POST", mode === "signup" ? "/console/signup" : "/console/session", body);
      announce(`Signed in as ${user.name || user.email}`);
      signedIn(user);
    } catch (failure) {
      error.textContent = failure.message;
      password.focus();
    } finally {
      submit.disabled = false;
      submit.removeAttribute("aria-busy");
    }
  });

  show("signin");
  main.append(
    h(
      "div",
      { class: "auth-page" },
      h(
        "section",
        { class: "card auth-card", "aria-labelledby": "auth-title" },
        h("div", { class: "auth-brand" }, h("img", { src: "/console/icon.svg", alt: "", width: 40, height: 40 }), h("span", {}, "ragway")),
        notice ? h("p", { class: "notice", role: "status" }, notice) : null,
        heading,
        form,
        prompt,
        h("p", { class: "hint" }, "The first account created on a new ragway becomes its administrator."),
      ),
    ),
  );
  heading.id = "auth-title";
  email.focus();
  return null;
}

export function mountPending(main, { user, refresh, signOut }) {
  const status = h("p", { class: "hint", role: "status" }, "");
  const check = h("button", { class: "primary", type: "button" }, "Check again");
  async function poll() {
    try {
      const me = await api("GET", "/api/v1/auths/");
      if (me.role !== "pending") {
        await refresh();
        return;
      }
      status.textContent = `Still waiting (checked ${new Date().toLocaleTimeString()}).`;
    } catch (error) {
      status.textContent = error.message;
    }
  }
  check.addEventListener("click", poll);
  const signOutButton = h("button", { type: "button" }, "Sign out");
  signOutButton.addEventListener("click", signOut);
  main.append(
    h(
      "div",
      { class: "auth-page" },
      h(
        "section",
        { class: "card auth-card pending" },
        h("div", { class: "auth-brand" }, h("img", { src: "/console/icon.svg", alt: "", width: 40, height: 40 }), h("span", {}, "ragway")),
        h("h1", {}, "Waiting for an admin"),
        h(
          "p",
          {},
          `Your account (${user.email}) is waiting for an administrator to activate it. `,
          "This page checks every 10 seconds and opens the console as soon as you are let in.",
        ),
        status,
        h("div", { class: "actions" }, signOutButton, check),
      ),
    ),
  );
  const timer = setInterval(poll, 10000);
  return () => clearInterval(timer);
}
