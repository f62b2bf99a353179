"""Tests for ledger.note: C2SP signed notes and tlog-cosignature cosignatures."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger import note
from ledger.errors import NoteError

# Known answers from golang.org/x/mod/sumdb/note (package docs and note_test.go).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
ENOCH_B64 = (
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
)
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_SIG = f"— EnochRoot {ENOCH_B64}\n"

# transparency-dev/formats note/note_cosigv1_test.go: a native cosignature/v1 vkey, and a
# cosignature/v1 signature whose timestamp is 1727964367.
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
COSIG_B64 = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFi"
    "EBYJXORmnFBOBA=="
)
# The example cosignature line of C2SP tlog-cosignature, stamped "time 1679315147".
SPEC_COSIG_B64 = (
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+"
    "mbIUBkBIfZ+qnA=="
)
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def signature_of(b64: str, name: str = "x") -> note.Signature:
    raw = base64.b64decode(b64)
    return note.Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


# --- Keys -------------------------------------------------------------------------------


def test_signer_key_gives_published_verifier_key() -> None:
    signer = note.parse_signer_key(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier().vkey == PETER_VKEY
    assert note.encode_signer_key(signer) == PETER_SKEY
    assert PETER_SKEY not in repr(signer)


def test_key_id_is_truncated_sha256_of_name_type_and_key() -> None:
    public = base64.b64decode(PETER_VKEY.split("+", 2)[2])[1:]
    # Derived by hand from the signed-note formula, then checked against the vkey's ID.
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()
    assert int.from_bytes(digest[:4], "big") == 0xC74F20A3
    assert note.key_id("PeterNeumann", public) == 0xC74F20A3


def test_parse_vkey_accepts_published_keys() -> None:
    peter = note.parse_vkey(PETER_VKEY)
    assert type(peter) is note.Verifier
    assert (peter.name, peter.key_id, peter.vkey) == ("PeterNeumann", 0xC74F20A3, PETER_VKEY)
    remora = note.parse_vkey(REMORA_VKEY)
    assert type(remora) is note.CosignatureVerifier
    assert (remora.name, remora.key_id, remora.vkey) == ("remora.n621.de", 0xDA77ADE7, REMORA_VKEY)
    # A type 0x01 key whose base64 contains "+" (note_cosigv1_test.go).
    test_key = note.parse_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    assert test_key.key_id == 0x7997405C


def test_mangled_verifier_keys_are_refused() -> None:
    # As golang.org/x/mod/sumdb/note TestNewVerifier: every proper substring and every
    # single-character change fails.
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    note.parse_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(NoteError):
            note.parse_vkey(mangled)
    # Wrong key length and unknown algorithm, each with an adjusted key hash.
    with pytest.raises(NoteError):
        note.parse_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(NoteError):
        note.parse_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_mangled_signer_keys_are_refused() -> None:
    # As golang.org/x/mod/sumdb/note TestNewSigner.
    for i in range(len(PETER_SKEY) + 1):
        for j in range(i + 1, len(PETER_SKEY) + 1):
            if (i, j) != (0, len(PETER_SKEY)):
                with pytest.raises(NoteError):
                    note.parse_signer_key(PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        mangled = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
        with pytest.raises(NoteError):
            note.parse_signer_key(mangled)


def test_generated_signer_round_trips() -> None:
    signer = note.generate_signer("onceonly.example/ledger")
    restored = note.parse_signer_key(note.encode_signer_key(signer) + "\n")
    assert restored.key_id == signer.key_id
    verifier = note.parse_vkey(signer.verifier().vkey)
    opened = note.open_note(note.sign_note("hello\n", [restored]), [verifier])
    assert opened.text == "hello\n"


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u00a0b", "a\u2003b", "a\nb"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError):
        note.generate_signer(name)


# --- Signing and opening ------------------------------------------------------------------


def test_sign_gives_published_note() -> None:
    signer = note.parse_signer_key(PETER_SKEY)
    assert note.sign_note(TEXT, [signer]) == (TEXT + "\n" + PETER_SIG).encode()


def test_open_with_one_known_and_one_unknown_key() -> None:
    peter, enoch = note.parse_vkey(PETER_VKEY), note.parse_vkey(ENOCH_VKEY)
    message = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    opened = note.open_note(message, [peter])
    assert opened.text == TEXT
    assert opened.signatures == (signature_of(PETER_B64, "PeterNeumann"),)
    assert opened.unverified == (signature_of(ENOCH_B64, "EnochRoot"),)
    both = note.open_note(message, [peter, enoch])
    assert [s.name for s in both.signatures] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()
    assert signature_of(PETER_B64, "PeterNeumann").line() == PETER_SIG


def test_open_without_a_known_signature_fails() -> None:
    message = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    with pytest.raises(NoteError, match="no signature from a known key"):
        note.open_note(message, [])


def test_open_with_an_invalid_known_signature_fails() -> None:
    # golang.org/x/mod/sumdb/note TestOpen, "Invalid signature".
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match="invalid signature"):
        note.open_note((TEXT + "\n" + bad).encode(), [note.parse_vkey(PETER_VKEY)])


def test_open_keeps_one_of_each_repeated_signature() -> None:
    # golang.org/x/mod/sumdb/note TestOpen, "Duplicated verified and unverified signatures".
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    message = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = note.open_note(message.encode(), [note.parse_vkey(PETER_VKEY)])
    assert [s.name for s in opened.signatures] == ["PeterNeumann"]
    assert [s.line() for s in opened.unverified] == [ENOCH_SIG, enoch_abcd]


def test_open_refuses_ambiguous_verifiers_and_too_many_signatures() -> None:
    peter = note.parse_vkey(PETER_VKEY)
    with pytest.raises(NoteError, match="ambiguous"):
        note.open_note((TEXT + "\n" + PETER_SIG).encode(), [peter, note.parse_vkey(PETER_VKEY)])
    with pytest.raises(NoteError):
        note.open_note((TEXT + "\n" + PETER_SIG * 101).encode(), [peter])
    # At least 16 signatures must be accepted (C2SP signed-note).
    note.open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG * 15).encode(), [peter])


@pytest.mark.parametrize(
    "message",
    [
        # golang.org/x/mod/sumdb/note TestOpen, badMsgs.
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + "— Bad Name " + PETER_B64,
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        # Further malformations.
        TEXT + "\n" + "- PeterNeumann " + PETER_B64 + "\n",
        TEXT + "\n" + "— PeterNeumann\n",
        TEXT + "\n" + "— PeterNeumann AAAA\n",
        TEXT + "\n" + "— PeterNeumann " + PETER_B64[:-1] + "\n",
        TEXT + "\n" + "— PeterNeumann  " + PETER_B64 + "\n",
        "a\rb\n\n" + PETER_SIG,
    ],
)
def test_malformed_notes_are_refused(message: str) -> None:
    with pytest.raises(NoteError):
        note.open_note(message.encode(), [note.parse_vkey(PETER_VKEY)])


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(NoteError):
        note.open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [note.parse_vkey(PETER_VKEY)])


def test_sign_refuses_bad_text_and_signers() -> None:
    signer = note.parse_signer_key(PETER_SKEY)
    for text in ["abc", "", "tab\there\n", "bell\x07\n"]:
        with pytest.raises(NoteError):
            note.sign_note(text, [signer])
    with pytest.raises(NoteError):
        note.sign_note(TEXT, [])
    with pytest.raises(NoteError):
        note.sign_note(TEXT, [signer, signer])


def test_text_with_blank_lines_round_trips() -> None:
    signer = note.generate_signer("poet")
    text = "Ognuno sta solo sul cuor della terra\n\ned è subito sera.\n\n"
    opened = note.open_note(note.sign_note(text, [signer]), [signer.verifier()])
    assert opened.text == text


# --- Cosignatures ---------------------------------------------------------------------------


def test_cosignature_timestamps_of_published_signatures() -> None:
    assert note.cosignature_time(signature_of(COSIG_B64)) == 1727964367
    assert note.cosignature_time(signature_of(SPEC_COSIG_B64)) == 1679315147
    # A plain Ed25519 note signature is not a cosignature (note_cosigv1_test.go).
    plain = (
        "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W"
        "/4xkNQY="
    )
    with pytest.raises(NoteError):
        note.cosignature_time(signature_of(plain))


def hand_made_cosignature(key: Ed25519PrivateKey, name: str, text: str, timestamp: int) -> str:
    """A cosignature line built straight from C2SP tlog-cosignature, without ledger.note."""
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text.encode()
    payload = key_id + timestamp.to_bytes(8, "big") + key.sign(message)
    return f"— {name} {base64.b64encode(payload).decode()}\n"


def test_cosigner_matches_the_specification() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    log = note.generate_signer("example.com/behind-the-sofa")
    witness = note.Cosigner("witness.example.com/w1", key, clock=lambda: 1679315147)
    expected_line = hand_made_cosignature(key, witness.name, SPEC_CHECKPOINT, 1679315147)

    signed = note.sign_note(SPEC_CHECKPOINT, [log, witness]).decode()
    assert signed.endswith(expected_line)

    verifier = note.parse_vkey(witness.verifier().vkey)
    assert type(verifier) is note.CosignatureVerifier
    opened = note.open_note(signed.encode(), [verifier])
    assert [note.cosignature_time(s) for s in opened.signatures] == [1679315147]
    assert [s.name for s in opened.unverified] == [log.name]


def test_cosignature_covers_timestamp_and_text() -> None:
    key = Ed25519PrivateKey.generate()
    witness = note.Cosigner("w", key, clock=lambda: 1000)
    verifier = witness.verifier()
    good = hand_made_cosignature(key, "w", SPEC_CHECKPOINT, 1000)
    note.open_note((SPEC_CHECKPOINT + "\n" + good).encode(), [verifier])

    raw = base64.b64decode(good.split(" ")[2])
    restamped = note.Signature("w", verifier.key_id, (1001).to_bytes(8, "big") + raw[12:])
    with pytest.raises(NoteError):
        note.open_note((SPEC_CHECKPOINT + "\n" + restamped.line()).encode(), [verifier])
    with pytest.raises(NoteError):
        note.open_note((SPEC_CHECKPOINT + "extension\n\n" + good).encode(), [verifier])
    # The same key as a plain Ed25519 verifier has another key ID: the line is unknown.
    plain = note.Verifier("w", verifier.public_key)
    assert plain.key_id != verifier.key_id
    with pytest.raises(NoteError, match="no signature from a known key"):
        note.open_note((SPEC_CHECKPOINT + "\n" + good).encode(), [plain])


def test_cosigner_refuses_out_of_range_time() -> None:
    witness = note.Cosigner("w", Ed25519PrivateKey.generate(), clock=lambda: 2**63)
    with pytest.raises(NoteError):
        note.sign_note(SPEC_CHECKPOINT, [witness])
    with pytest.raises(NoteError):
        note.encode_signer_key(witness)
