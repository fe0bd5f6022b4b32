"""Images as single files: OCI layout archives (`oci-archive:`, plain tar or zstd), read in
place or unpacked after checking, written as one stream; bundles of many images with their
record, deltas and recompression.

    tarfiles    bounded reading of tar headers and top files
    unpack      checked unpacking of a layout archive
    pack        writing a layout directory as one archive, atomically
    reader      a plain `.tar` read in place, as an endpoint (the layout's read path)
    writer      a copy written straight into a new archive, as an endpoint
    bundle      many images in one archive: create, list, verify, push
    recompress  gzip layers to zstd with new manifests
"""
