// The reference tus server of benchmarks/tus_bench.py: @tus/server with @tus/s3-store.
// argv[2] is JSON: {port, bucket, endpoint, accessKey, secretKey, region, partSize}
import { Server } from '@tus/server'
import { S3Store } from '@tus/s3-store'

const cfg = JSON.parse(process.argv[2])
const datastore = new S3Store({
  partSize: cfg.partSize,
  s3ClientConfig: {
    bucket: cfg.bucket,
    region: cfg.region,
    endpoint: cfg.endpoint,
    forcePathStyle: true,
    // rclone refuses aws-chunked bodies with trailing checksums (411 MissingContentLength),
    // which the AWS SDK sends by default since 2025
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    credentials: { accessKeyId: cfg.accessKey, secretAccessKey: cfg.secretKey },
  },
})
const server = new Server({ path: '/api/tus', datastore })
server.listen({ host: '127.0.0.1', port: cfg.port })
