// The presigned multipart contract of streamx.web: init, a URL per part, PUT each part
// straight to S3, complete. The first failure stops every worker and aborts the upload.
import { api, query } from "./api.js";

const MiB = 1024 * 1024;
export const PART_SIZE = 8 * MiB;  // larger for files over 78 GiB: S3 takes 10,000 parts
export const PARALLEL = 4;

// The part size for a file: 8 MiB, or whole MiB large enough for 10,000 parts.
export const partSizeFor = (size) => Math.max(PART_SIZE, Math.ceil(size / 10000 / MiB) * MiB);

function stopped(signal) {
  return signal.reason instanceof Error ? signal.reason : new DOMException("stopped", "AbortError");
}

// One part, by XHR for its upload progress events; resolves to the part's ETag (or null
// when the bucket's CORS rule does not expose it).
function putPart(url, blob, number, onProgress, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(stopped(signal));
    const xhr = new XMLHttpRequest();
    const stop = () => xhr.abort();
    signal.addEventListener("abort", stop, { once: true });
    const settle = (fn, value) => { signal.removeEventListener("abort", stop); fn(value); };
    xhr.open("PUT", url);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status < 300) return settle(resolve, xhr.getResponseHeader("ETag"));
      const code = /<Code>([^<]*)<\/Code>/.exec(xhr.responseText ?? "")?.[1];
      settle(reject, new Error(`part ${number}: the storage answered ${xhr.status}${code ? " " + code : ""}`));
    };
    xhr.onerror = () => settle(reject, new Error(
      `part ${number}: the PUT to the storage failed (network, or the bucket's CORS rule ` +
      `does not allow this page's origin ${location.origin})`));
    xhr.onabort = () => settle(reject, stopped(signal));
    xhr.send(blob);
  });
}

// Upload `file` to `key`; onProgress(bytes) as parts go; log(text) for each step.
export async function uploadMultipart(file, key, { onProgress, log }) {
  const partSize = partSizeFor(file.size);
  const count = Math.max(1, Math.ceil(file.size / partSize));
  const upload = await api("POST", "/uploads/multipart/init", {
    key, content_type: file.type || "application/octet-stream", size: file.size,
  });
  // later calls send back everything init answered (upload_id, key, any token it added)
  log(`init ${upload.key}: ${count} part(s) of up to ${partSize / MiB} MiB`);
  const controller = new AbortController();
  const { signal } = controller;
  const loaded = new Array(count + 1).fill(0);
  const report = () => onProgress(loaded.reduce((a, b) => a + b, 0));
  const etags = {};
  let next = 1;
  const worker = async () => {
    try {
      while (next <= count && !signal.aborted) {
        const n = next++;
        const { url } = await api("POST", "/uploads/multipart/part-url", { ...upload, part_number: n }, signal);
        const blob = file.slice((n - 1) * partSize, Math.min(file.size, n * partSize));
        etags[n] = await putPart(url, blob, n, (b) => { loaded[n] = b; report(); }, signal);
        loaded[n] = blob.size;
        report();
      }
    } catch (err) {
      if (!signal.aborted) controller.abort(err);  // the first failure stops the others
      throw err;
    }
  };
  try {
    // wait for every worker to stop, so that no part is in flight when we abort
    await Promise.allSettled(Array.from({ length: Math.min(PARALLEL, count) }, worker));
    if (signal.aborted) throw stopped(signal);
    if (Object.values(etags).some((e) => !e)) {  // the CORS rule hides ETag: ask the server
      log("the bucket's CORS rule does not expose ETag: the server lists the parts");
      const { parts } = await api("GET", "/uploads/multipart/parts" + query(upload));
      for (const p of parts) etags[p.PartNumber] = p.ETag;
    }
    const parts = Array.from({ length: count }, (_, i) => ({ PartNumber: i + 1, ETag: etags[i + 1] }));
    return await api("POST", "/uploads/multipart/complete", { ...upload, parts });
  } catch (err) {
    log(`failed: ${err.message}; aborting the multipart upload`);
    try {
      await api("DELETE", "/uploads/multipart/abort", upload);
      log("aborted: no part is left in the bucket");
    } catch (abortErr) {
      log(`the abort failed too (${abortErr.message}); \`streamx sweep\` cleans up`);
    }
    throw err;
  }
}
