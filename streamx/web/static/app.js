// The page: sign in (a session cookie), pick a file and a method, show progress and errors.
import { api } from "./api.js";
import { uploadMultipart } from "./multipart.js";
import { uploadTus } from "./tus.js";

// Each method is async (file, key, {onProgress, log}) => {key, size, etag}; add yours
// here and as an <option> of #method.
export const METHODS = { multipart: uploadMultipart, tus: uploadTus };

const $ = (id) => document.getElementById(id);
const log = (text) => { $("log").append(text + "\n"); };
const setState = (state) => { document.body.dataset.state = state; };
let session = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  log("error: " + message);
}

function showProgress(bytes, total) {
  const done = total ? Math.min(bytes / total, 1) : 1;
  $("bar").value = done;
  $("pct").textContent = (100 * done).toFixed(1) + " %";
}

async function signIn() {
  try {
    session = await api("GET", "/session");
    $("who").textContent = `signed in as ${session.user}: your files go under ${session.prefix}`;
  } catch (err) {
    $("who").textContent = "not signed in";
    showError(`signing in failed: ${err.message}`);
  }
}

async function upload(file, method) {
  $("error").hidden = true;
  setState("uploading");
  showProgress(0, file.size);
  try {
    if (!session) throw new Error("no session: reload the page");
    const key = session.prefix + file.name;
    const done = await METHODS[method](file, key, {
      onProgress: (bytes) => showProgress(bytes, file.size), log,
    });
    showProgress(file.size, file.size);
    log(`complete: ${done.key}, ${done.size} bytes, ETag ${done.etag}`);
    const path = done.key.split("/").map(encodeURIComponent).join("/");
    const { url } = await api("GET", "/uploads/download/" + path);
    const link = document.createElement("a");
    link.href = url;
    link.textContent = `download ${file.name} (the link is valid for an hour)`;
    $("log").append(link, "\n");
    setState("done");
  } catch (err) {
    showError(err.message);
    setState("failed");
  }
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (file && document.body.dataset.state !== "uploading") upload(file, $("method").value);
});
signIn();
