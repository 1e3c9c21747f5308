"""The Engine's verbs, one group per module; :class:`streamx.Engine` (``_engine.py``) composes them.

``base.py`` holds what every verb needs from the open engine (its S3 layer,
the :class:`~streamx._context.TransferContext` of a call, the store and its
probe); ``writes.py`` the upload verbs, ``reads.py`` the download and listing
verbs, ``objects.py`` delete, copy, and the narrow presign/multipart API of
the web core. Each verb checks its arguments in the module of its stage
(``upload/call.py``, ``download/planner.py`` ...) and hands the work on.
"""
