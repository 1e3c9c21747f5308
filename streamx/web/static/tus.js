// tus 1.0.0 through this server (/api/tus/) with the bundled tus-js-client (tus.min.js,
// MIT): 8 MiB PATCHes, resumed from the server's offset after a dropped connection. The
// key goes in the metadata; the server checks it against your prefix, as for every route.
export const CHUNK_SIZE = 8 * 1024 * 1024;

export function uploadTus(file, key, { onProgress, log }) {
  return new Promise((resolve, reject) => {
    const upload = new window.tus.Upload(file, {
      endpoint: "/api/tus/",
      chunkSize: CHUNK_SIZE,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      metadata: { key, filename: file.name, filetype: file.type || "application/octet-stream" },
      onProgress: (sent) => onProgress(sent),
      onError: (err) => reject(new Error(`tus: ${err.message}`)),
      onSuccess: () => {
        log(`tus upload ${upload.url}`);
        resolve({ key, size: file.size, etag: "(tus)" });
      },
    });
    upload.start();
  });
}
