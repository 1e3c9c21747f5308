// The client of benchmarks/tus_bench.py: one file through tus-js-client.
// argv[2] is JSON: {endpoint, path, chunkSize (null: the whole file in one PATCH)}
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const opts = JSON.parse(process.argv[2])
const started = process.hrtime.bigint()
const upload = new tus.Upload(fs.createReadStream(opts.path), {
  endpoint: opts.endpoint,
  chunkSize: opts.chunkSize ?? Infinity,
  storeFingerprintForResuming: false,
  onError (err) { console.log(JSON.stringify({ error: String(err.message).slice(0, 300) })); process.exit(2) },
  onSuccess () {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    console.log(JSON.stringify({ seconds, url: upload.url }))
    process.exit(0)
  },
})
upload.start()
