"""Streaming expansion of bulk archives (zip, tar, tar.gz/tgz, tar.bz2, tar.xz) and mail.

Each regular file inside an archive becomes its own :class:`ArchiveMember`;
everything that cannot or must not be ingested becomes a :class:`MemberError`
with an UPPER_SNAKE machine code.  Nothing is ever extracted to disk except a
nested zip, which is spooled (bounded by ``max_member_bytes``) because zip
needs random access.

Consumer contract (the important part)
--------------------------------------
``iter_archive`` is a *sequential* iterator, because tar archives are read in
stream mode (``tarfile`` ``r|``) and cannot rewind:

* Process each :class:`ArchiveMember` **before asking for the next item**.
  A member (and any stream opened from it) is valid only until the iterator is
  advanced or closed; afterwards ``member.open()`` and reads on an already
  opened stream raise :class:`MemberExpiredError`.  This is enforced for zip
  members too, so code written against zip behaves the same on tar.
* ``member.open()`` may be called **once** per member (a tar member stream
  cannot be re-read).  The returned binary stream is a context manager.
* Reading the stream enforces the limits even if the archive headers lie: it
  raises :class:`ArchiveLimitError` (``MEMBER_TOO_LARGE``,
  ``COMPRESSION_RATIO_EXCEEDED``, ``TOTAL_SIZE_EXCEEDED``) or
  :class:`ArchiveCorruptError` (``CORRUPT_ARCHIVE``: bad CRC, truncated data).
  Both subclass :class:`ArchiveError` and carry ``reason``/``message``/``path``;
  treat them as a failure of that one member and keep iterating.  The iterator
  does not re-report such a member, except for ``TOTAL_SIZE_EXCEEDED``, which is
  terminal and is also yielded as a :class:`MemberError` before iteration stops.
* The iterator itself never raises for bad archive content: corrupt or
  truncated data becomes a ``CORRUPT_ARCHIVE`` :class:`MemberError` (for the
  member, or for the archive with ``path`` = the archive's own path, ``""`` for
  the top-level archive) and members yielded before stay valid.  Only caller
  errors (e.g. a path that cannot be opened) propagate.

Limits
------
* ``max_members`` counts non-directory entries over the whole tree (nested
  archives included); after that many, one ``TOO_MANY_MEMBERS`` is yielded and
  iteration stops.
* ``max_total_uncompressed_bytes`` counts declared sizes up front and actual
  bytes while reading (whichever is larger), over the whole tree.  A nested
  archive's own bytes count as well as its members' bytes (both get
  decompressed).  In tar streams, the data of a rejected member still has to be
  decompressed to skip it, so its declared size counts too.  Exceeding it is
  terminal (``TOTAL_SIZE_EXCEEDED``, then stop).
* ``max_compression_ratio`` is checked on declared zip sizes and, for every
  format, while streaming (uncompressed bytes produced / compressed bytes
  consumed).  It is only applied once a member has produced at least 1 MiB,
  so small, very compressible files are not rejected.
* ``max_depth``: the top-level archive is depth 0, an archive inside it is
  depth 1; a nested archive deeper than ``max_depth`` is a
  ``NESTING_TOO_DEEP`` error (not expanded, not yielded as a document).
* tar headers (pax / GNU long names) larger than 1 MiB are refused as
  ``CORRUPT_ARCHIVE`` so a forged header cannot make ``tarfile`` buffer
  gigabytes in memory.

Nested member paths are joined with ``"!/"``: ``"outer.zip!/inner.tgz!/a/b.pdf"``;
:func:`member_source_uri` builds the matching source URI.

Mail (``.eml``, ``.msg``)
-------------------------
A message is expanded like an archive: first its body, as a member at the message's own path
(``""`` for a top-level message, so its source URI is the message's; an RFC 822 message with the
headers and text/HTML body, attachments left out), then each attachment at
``<message>!/<attachment name>``, parsed by its own type; an attachment that is itself an
archive or a message (``message/rfc822``, an attached ``.eml``/``.msg``) is expanded in turn,
within the same limits (depth, members, sizes). A message beyond ``max_depth`` is yielded whole
(the parser then reads its attachments inline). ``.msg`` files are read with python-oxmsg (MIT).

Document containers (``.docx``, ``.xlsx``, ``.pptx``, ``.odt``, ``.epub``, any zip by content)
are not expanded but checked against the same limits before they are parsed:
:func:`check_container` (:mod:`.containers`).

Modules: :mod:`.model` (limits, reasons, members and errors), :mod:`.detect` (is it an
archive?), :mod:`.containers` (zip-based documents checked like archives), :mod:`.mail` (a
message's body and attachments), :mod:`.streams` (limit-enforcing readers), :mod:`.expand` (the
zip/tar/mail engine). Import from this package, not the modules.
"""

from docfactory.archives.containers import (
    CONTAINER_RATIO,
    CONTAINER_REASONS,
    CONTAINER_TOO_LARGE,
    CONTAINER_TOO_MANY_MEMBERS,
    CONTAINER_UNSUPPORTED_METHOD,
    ContainerReport,
    check_container,
    declared_size,
)
from docfactory.archives.detect import is_archive
from docfactory.archives.expand import iter_archive
from docfactory.archives.model import (
    ABSOLUTE_PATH,
    COMPRESSION_RATIO_EXCEEDED,
    CORRUPT_ARCHIVE,
    EMPTY_ARCHIVE,
    ENCRYPTED_MEMBER,
    LINK_MEMBER,
    MEMBER_TOO_LARGE,
    NESTING_TOO_DEEP,
    PATH_TRAVERSAL,
    REASONS,
    TOO_MANY_MEMBERS,
    TOTAL_SIZE_EXCEEDED,
    UNSUPPORTED_MEMBER,
    ArchiveCorruptError,
    ArchiveError,
    ArchiveItem,
    ArchiveLimitError,
    ArchiveLimits,
    ArchiveMember,
    MemberError,
    MemberExpiredError,
    member_source_uri,
)

__all__ = [
    "ABSOLUTE_PATH",
    "COMPRESSION_RATIO_EXCEEDED",
    "CONTAINER_RATIO",
    "CONTAINER_REASONS",
    "CONTAINER_TOO_LARGE",
    "CONTAINER_TOO_MANY_MEMBERS",
    "CONTAINER_UNSUPPORTED_METHOD",
    "CORRUPT_ARCHIVE",
    "EMPTY_ARCHIVE",
    "ENCRYPTED_MEMBER",
    "LINK_MEMBER",
    "MEMBER_TOO_LARGE",
    "NESTING_TOO_DEEP",
    "PATH_TRAVERSAL",
    "REASONS",
    "TOO_MANY_MEMBERS",
    "TOTAL_SIZE_EXCEEDED",
    "UNSUPPORTED_MEMBER",
    "ArchiveCorruptError",
    "ArchiveError",
    "ArchiveItem",
    "ArchiveLimitError",
    "ArchiveLimits",
    "ArchiveMember",
    "ContainerReport",
    "MemberError",
    "MemberExpiredError",
    "check_container",
    "declared_size",
    "is_archive",
    "iter_archive",
    "member_source_uri",
]
