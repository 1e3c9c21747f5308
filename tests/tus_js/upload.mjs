// Upload one file with tus-js-client under Node; driven by tests/web/tus/test_tus_clients.py.
// argv[2] is JSON: {endpoint, path, chunkSize?, headers?, metadata?, uploadUrl?,
//   abortAfter? (bytes: abort the request in flight once this many were sent),
//   asStream? (send a Readable, not a file), terminate? (with abortAfter: abort with termination, a DELETE),
//   retryDelays?, uploadLengthDeferred?, uploadDataDuringCreation?, parallelUploads?}
// Prints one JSON line per event: {"event": "progress"|"success"|"aborted"|"error", ...}.
import fs from 'node:fs'
import { PassThrough } from 'node:stream'
import * as tus from 'tus-js-client'

const opts = JSON.parse(process.argv[2])
const say = (event, extra = {}) => process.stdout.write(JSON.stringify({ event, ...extra }) + '\n')

// asStream: a plain Readable (tus-js-client's StreamSource), as for a pipe or a socket; its
// FileSource miscounts the last chunk of a deferred-length upload (4.3.1), so deferred
// lengths are tested with a stream, which is where they are used
const input = opts.asStream ? fs.createReadStream(opts.path).pipe(new PassThrough()) : fs.createReadStream(opts.path)
const upload = new tus.Upload(input, {
  endpoint: opts.endpoint,
  uploadUrl: opts.uploadUrl ?? null,
  chunkSize: opts.chunkSize ?? Infinity,
  headers: opts.headers ?? {},
  metadata: opts.metadata ?? {},
  retryDelays: opts.retryDelays ?? null,
  uploadLengthDeferred: opts.uploadLengthDeferred ?? false,
  uploadDataDuringCreation: opts.uploadDataDuringCreation ?? false,
  parallelUploads: opts.parallelUploads ?? 1, // > 1: partial uploads, then a final (concatenation)
  storeFingerprintForResuming: false,
  onProgress (sent, total) {
    if (opts.abortAfter != null && sent >= opts.abortAfter && !upload._stopped) {
      upload._stopped = true
      upload.abort(Boolean(opts.terminate)).then(() => { say('aborted', { url: upload.url, sent }); process.exit(0) })
    }
  },
  onChunkComplete (size, accepted, total) { say('chunk', { accepted, total, url: upload.url }) },
  onError (err) {
    const status = err.originalResponse ? err.originalResponse.getStatus() : null
    say('error', { message: String(err.message).slice(0, 500), status, url: upload.url })
    process.exit(2)
  },
  onSuccess () {
    say('success', { url: upload.url })
    process.exit(0)
  },
})
upload.start()
