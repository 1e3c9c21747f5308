// The concurrent cell of benchmarks/tus_bench.py: the same file uploaded N times at once by
// tus-js-client in one Node process. argv[2] is JSON: {endpoint, path, count, chunkSize}
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const opts = JSON.parse(process.argv[2])
const started = process.hrtime.bigint()
const one = () => new Promise((resolve, reject) => {
  const upload = new tus.Upload(fs.createReadStream(opts.path), {
    endpoint: opts.endpoint,
    chunkSize: opts.chunkSize ?? Infinity,
    storeFingerprintForResuming: false,
    onError: reject,
    onSuccess: () => resolve(upload.url),
  })
  upload.start()
})
Promise.all(Array.from({ length: opts.count }, one)).then(
  (urls) => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    console.log(JSON.stringify({ seconds, count: urls.length }))
    process.exit(0)
  },
  (err) => { console.log(JSON.stringify({ error: String(err.message).slice(0, 300) })); process.exit(2) },
)
