// The real, unchanged Uppy 6 packages, bundled into one script for tests/browser/uppy.html.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import AwsS3 from '@uppy/aws-s3'

window.UppyLib = { Uppy, Dashboard, AwsS3 }
