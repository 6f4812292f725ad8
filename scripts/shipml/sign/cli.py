"""``shipml sign``, ``shipml verify`` and ``shipml keygen``: thin handlers over
:mod:`shipml.sign.core` (built-in signer) and :mod:`shipml.sign._cosign` (the cosign CLI).

They read like cosign's: ``shipml sign --key cosign.key IMAGE@DIGEST``,
``shipml verify --key cosign.pub IMAGE[:TAG|@DIGEST] [--require-gates]``, ``shipml keygen``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipml import cli as _cli
from shipml._stage import MODEL, Option, add_command, conclude, stage_config
from shipml.config import Config
from shipml.errors import EXIT_GATE_FAILED, EXIT_OK, ConfigError
from shipml.results import (
    Check,
    Handoff,
    StageClock,
    StageResult,
    handed_on,
    is_local_image_id,
    results_path,
)

if TYPE_CHECKING:
    from shipml.oci import Reference, RegistryClient

IMAGE = Option("--image", ("sign", "image"), "SHIPML_SIGN_IMAGE",
               "image pinned by digest, REGISTRY/REPOSITORY@sha256:DIGEST (default: build's "
               "hand-off); also the positional IMAGE", "IMAGE")
COSIGN = Option("--cosign", ("sign", "cosign"), "SHIPML_COSIGN",
                "auto, always or never: delegate to the cosign CLI", "WHEN")
TLOG = Option("--tlog", ("sign", "tlog"), "SHIPML_TLOG",
              "with the cosign CLI, use the Rekor transparency log for key-based signatures")
REQUIRE_GATES = Option("--require-gates", ("sign", "require_gates"), "SHIPML_REQUIRE_GATES",
                       "require every attested gate to have passed")
REQUIRED_GATES = Option("--required-gates", ("sign", "required_gates"), "SHIPML_REQUIRED_GATES",
                        "comma-separated gates that must be attested", "LIST")

#: the keys ``shipml sign`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    IMAGE,
    Option("--key", ("sign", "key"), "SHIPML_SIGN_KEY",
           "private key: cosign.key (password from $COSIGN_PASSWORD) or a PKCS#8 PEM", "PATH",
           pipeline_input="sign-key"),
    Option("--keyless", ("sign", "keyless"), "SHIPML_KEYLESS",
           "sign with the workflow's OIDC identity (needs the cosign CLI)", pipeline_input="keyless"),
    Option("--attest", ("sign", "attest"), "SHIPML_ATTEST",
           "attach the signed attestation of the gate results"),
    Option("--gates", ("sign", "gates"), "SHIPML_GATES",
           "comma-separated stage results the attestation carries", "LIST"),
    REQUIRE_GATES,
    REQUIRED_GATES,
    COSIGN,
    TLOG,
    MODEL,
)
#: the keys ``shipml verify`` takes
VERIFY_OPTIONS = (
    IMAGE,
    Option("--key", ("sign", "public_key"), "SHIPML_PUBLIC_KEY", "public key: cosign.pub", "PATH"),
    REQUIRE_GATES,
    REQUIRED_GATES,
    COSIGN,
    TLOG,
    MODEL,
)
#: the keys ``shipml keygen`` takes
KEYGEN_OPTIONS = (
    Option("--key", ("sign", "key"), "SHIPML_SIGN_KEY",
           "where the private key goes (default cosign.key); the public key goes beside it, "
           ".pub", "PATH"),
    COSIGN,
)

NO_IMAGE = ("no image to {verb}: give IMAGE (REGISTRY/REPOSITORY@sha256:DIGEST), --image or "
            "sign.image, or run shipml build first so that .shipml/results/build.json hands "
            "one on")
NOT_PUSHED = ("{where}: {image_id} is a local image id, an image built but not pushed; {verb} "
              "needs it in a registry: push it (build.push: true, the default) and give "
              "REGISTRY/REPOSITORY@sha256:DIGEST")
TWO_IMAGES = "the positional IMAGE {positional} and --image {flag} differ; give one"
NO_KEY = ("shipml sign needs a key: --key cosign.key (create one with `shipml keygen`), or "
          "keyless: true with the cosign CLI on PATH and, in GitHub Actions,\n"
          "  permissions:\n    id-token: write")
KEYLESS_NEEDS_COSIGN = ("keyless signing needs the cosign CLI on PATH; add before this step:\n"
                        "  - uses: sigstore/cosign-installer@<sha> # v3")
NO_PUBLIC_KEY = "shipml verify needs the public key: --key cosign.pub (or sign.public_key)"
KEY_URI_NEEDS_COSIGN = ("{key}: key URIs (KMS, k8s://, …) need the cosign CLI on PATH; the "
                        "built-in signer reads key files and env://VARIABLE")
KEY_EXISTS = ("{path} already exists; shipml keygen does not overwrite keys: move it away or "
              "choose another --output-key-prefix")
KEY_PATH_IS_FOLDER = ("{path} is a folder; shipml keygen writes PREFIX.key and PREFIX.pub: give "
                      "--output-key-prefix FOLDER/cosign (or sign.key: FOLDER/cosign.key)")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``sign``, ``verify`` and ``keygen`` subcommands."""
    sign = add_command(
        subparsers, common, "sign", OPTIONS, run_sign,
        summary="sign the built image in cosign's format and attest the gate results",
        description="Sign IMAGE@DIGEST as cosign does (signature under the sha256-<hex>.sig tag) "
                    "and attach a signed in-toto attestation of the gate results (.att). Uses "
                    "the cosign CLI when it is on PATH. Exit 0 signed, 1 a required gate did "
                    "not pass, 2 bad input, 3 registry unreachable.",
    )
    sign.add_argument("positional_image", nargs="?", metavar="IMAGE",
                      help="REGISTRY/REPOSITORY@sha256:DIGEST")

    verify = add_command(
        subparsers, common, "verify", VERIFY_OPTIONS, run_verify,
        summary="check an image's cosign signature and, with --require-gates, its gates attestation",
        description="Check that IMAGE (by tag or digest) carries a signature by --key that "
                    "covers its digest, and with --require-gates an attestation by the same key "
                    "that says every gate passed. Exit 0 verified, 1 not verified (the message "
                    "says what is missing or wrong), 2 bad input, 3 registry unreachable.",
    )
    verify.add_argument("positional_image", nargs="?", metavar="IMAGE",
                        help="REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]")

    keygen = add_command(
        subparsers, common, "keygen", KEYGEN_OPTIONS, run_keygen,
        summary="write a cosign key pair: cosign.key (encrypted) and cosign.pub",
        description="Write an ECDSA P-256 key pair as `cosign generate-key-pair` does, the "
                    "private key encrypted with $COSIGN_PASSWORD (scrypt + secretbox). Never "
                    "overwrites a key.",
    )
    keygen.add_argument("--output-key-prefix", metavar="PREFIX",
                        help="write PREFIX.key and PREFIX.pub (as cosign's flag)")


# --- sign ---------------------------------------------------------------------------------------


def run_sign(args: argparse.Namespace) -> int:
    """Sign the image (and attest the gates); write ``results/sign.json``; return the exit code."""
    from shipml.ci import detect

    clock = StageClock()
    platform = detect()
    _merge_positional(args)
    config = stage_config(args, OPTIONS)
    section = config.section("sign")
    output = _cli.output_dir(args)
    image = _image(config, output, "sign")
    _require_digest(image, config)
    gates = _gate_results(output, section["gates"])
    refusal = _refusal(gates, section) if section["require_gates"] else []
    if refusal:
        result = StageResult(
            stage="sign", status="fail", started_at=clock.started_at, duration_s=clock.elapsed(),
            summary=f"not signed: {refusal[0].detail}", checks=tuple(refusal),
            metrics={"image": str(image), "digest": image.digest})
        return conclude(result, result.write(output), platform, config=config)

    from shipml.sign import _cosign
    from shipml.sign.attestation import PREDICATE_TYPE, gates_predicate

    cosign = _cosign.find_cosign(section["cosign"])
    key_text = section["key"]
    if section["keyless"] and cosign is None:
        raise ConfigError(KEYLESS_NEEDS_COSIGN)
    if key_text is None and not section["keyless"]:
        raise ConfigError(NO_KEY)
    model = _model_path(config)
    predicate = gates_predicate(gates, model=model,
                                model_label=str(config.section("model").get("path") or ""),
                                source={"repository": platform.repository() or "",
                                        "revision": platform.commit_sha() or "",
                                        "run": platform.run_url() or ""})
    client = _client(image, section)
    if cosign is not None:
        key_arg = None if key_text is None else _key_argument(config, key_text, "key")
        plain = _plain_http(image, section)
        _cosign.sign(cosign, image, key_arg, annotations=section["annotations"],
                     tlog=section["tlog"], plain_http=plain)
        if section["attest"]:
            _cosign.attest(cosign, image, key_arg, predicate=predicate,
                           predicate_type=PREDICATE_TYPE, tlog=section["tlog"], plain_http=plain)
        signer, signed_by = "cosign", (key_text or "keyless (OIDC)")
        from shipml.sign.core import attestation_tag, signature_tag

        signature_ref = image.with_tag(signature_tag(image.digest))
        attestation_ref = image.with_tag(attestation_tag(image.digest)) if section["attest"] \
            else None
        signature_digest = attestation_digest = ""
    else:
        from shipml.sign.core import attest_image, describe_key, sign_image
        from shipml.sign.keys import is_encrypted, load_private_key, read_password

        key_path = _key_file(config, key_text, "key")
        # Not masked: a workflow reads it from a secret, which the runner masks already, and
        # ::add-mask:: would print it wherever no runner reads the log.
        password = read_password(key_path) if is_encrypted(key_path) else None
        key = load_private_key(key_path, password)
        client.resolve(image)  # the image must exist before anything is written beside it
        signed = sign_image(client, image, key, section["annotations"])
        signature_ref, signature_digest = signed.ref, signed.digest
        attestation_ref, attestation_digest = None, ""
        if section["attest"]:
            attached = attest_image(client, image, key, predicate)
            attestation_ref, attestation_digest = attached.ref, attached.digest
        signer, signed_by = "shipml", describe_key(key, str(key_text))

    checks = [Check(f"the image is signed by {signed_by}", "pass",
                    detail=f"{signature_ref} ({signer})")]
    if attestation_ref is not None:
        attested = ", ".join(f"{gate['stage']} {gate['status']}" for gate in predicate["gates"])
        checks.append(Check("the gates attestation is attached", "pass",
                            observed=str(predicate["verdict"]),
                            detail=f"{attestation_ref}: {attested or 'no gate results'}"))
    summary = f"signed {image}" + (f"; gates attested ({predicate['verdict']})"
                                   if attestation_ref is not None else "")
    result = StageResult(
        stage="sign", status="pass", summary=summary, started_at=clock.started_at,
        duration_s=clock.elapsed(), checks=tuple(checks),
        metrics={"image": str(image), "digest": image.digest, "signer": signer,
                 "signature": str(signature_ref), "signature_digest": signature_digest,
                 "attestation": str(attestation_ref or ""), "attestation_digest": attestation_digest,
                 "gates_verdict": predicate["verdict"] if attestation_ref is not None else None},
        handoff=(Handoff(kind="signature", ref=str(signature_ref), digest=signature_digest),),
    )
    return conclude(result, result.write(output), platform, config=config, outputs={
        "image": f"{image.registry}/{image.repository}", "digest": image.digest,
        "signature": str(signature_ref), "attestation": str(attestation_ref or "")})


def _refusal(gates: list[StageResult], section: dict[str, Any]) -> list[Check]:
    from shipml.sign.attestation import gates_predicate, judge_predicate

    checks = judge_predicate(gates_predicate(gates), required=section["required_gates"])
    return [check for check in checks if check.status != "pass"]


def _gate_results(output: Path, names: list[str]) -> list[StageResult]:
    from shipml import stages

    found = []
    for name in sorted(names, key=stages.rank):
        path = results_path(output, name)
        if path.is_file():
            found.append(StageResult.read(path))
    return found


# --- verify -------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    """Verify the image's signature (and gates attestation); return 0 or 1."""
    from shipml.ci import detect
    from shipml.sign import _cosign
    from shipml.sign.attestation import PREDICATE_TYPE, file_sha256, judge_predicate

    platform = detect()
    _merge_positional(args)
    config = stage_config(args, VERIFY_OPTIONS)
    section = config.section("sign")
    image = _image(config, _cli.output_dir(args), "verify")
    if section["public_key"] is None:
        raise ConfigError(NO_PUBLIC_KEY)
    model = _model_path(config, strict=bool(config.sources.get(("model", "path"))))
    model_sha256 = file_sha256(model) if model is not None else ""
    cosign = _cosign.find_cosign(section["cosign"])
    if cosign is not None:
        key_arg = _key_argument(config, section["public_key"], "public_key")
        plain = _plain_http(image, section)
        passed, said = _cosign.verify(cosign, image, key_arg, tlog=section["tlog"],
                                      plain_http=plain)
        checks = [Check(f"the image is signed by {section['public_key']}",
                        "pass" if passed else "fail", detail=f"cosign verify: {said}")]
        if section["require_gates"]:
            statements, said = _cosign.verify_attestation(
                cosign, image, key_arg, predicate_type=PREDICATE_TYPE, tlog=section["tlog"],
                plain_http=plain)
            name = f"a gates attestation by {section['public_key']} covers the image"
            if not statements:
                checks.append(Check(name, "fail", detail=f"cosign verify-attestation: {said}"))
            else:
                checks.append(Check(name, "pass", detail="cosign verify-attestation"))
                checks += judge_predicate(statements[-1].get("predicate"),
                                          required=section["required_gates"],
                                          model_sha256=model_sha256)
        shown = image
    else:
        from shipml.sign.core import describe_key, verify_image
        from shipml.sign.keys import load_public_key

        key = load_public_key(_key_file(config, section["public_key"], "public_key"))
        verification = verify_image(
            _client(image, section), image, key,
            key_name=describe_key(key, section["public_key"]),
            require_gates=section["require_gates"], required=section["required_gates"],
            model_sha256=model_sha256)
        checks, shown = list(verification.checks), verification.image
    failed = [check for check in checks if check.status != "pass"]
    platform.set_output("status", "fail" if failed else "pass")
    platform.set_output("image", f"{shown.registry}/{shown.repository}")
    platform.set_output("digest", shown.digest)
    if not failed:
        print(f"shipml verify: PASS: {shown}")
        for check in checks:
            print(f"  PASS  {check.name}" + (f": {check.detail}" if check.detail else ""))
        return EXIT_OK
    print(f"shipml verify: FAIL: {shown}: {failed[0].detail or failed[0].name}")
    for check in checks:
        print(f"  {check.status.upper():5} {check.name}")
        if check.status != "pass" and check.detail:
            print(f"        {check.detail}")
    for check in failed:
        platform.annotate("error", check.detail or check.name, title="shipml verify: FAIL")
    return EXIT_GATE_FAILED


# --- keygen -------------------------------------------------------------------------------------


def run_keygen(args: argparse.Namespace) -> int:
    """Write ``PREFIX.key`` and ``PREFIX.pub``; return 0."""
    from shipml.sign import _cosign
    from shipml.sign.keys import generate_key_pair, read_password

    config = stage_config(args, KEYGEN_OPTIONS)
    section = config.section("sign")
    if args.output_key_prefix:
        prefix = Path(args.output_key_prefix)
    elif section["key"]:
        chosen = config.resolve_path(section["key"], "sign", "key")
        prefix = chosen.with_suffix("") if chosen.suffix == ".key" else chosen
    else:
        prefix = Path("cosign")
    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private, public):
        if path.is_dir():
            raise ConfigError(KEY_PATH_IS_FOLDER.format(path=path))
        if path.exists():
            raise ConfigError(KEY_EXISTS.format(path=path))
    if not private.parent.is_dir():
        raise ConfigError(f"{private.parent} is not a folder; create it first")
    cosign = _cosign.find_cosign(section["cosign"])
    if cosign is not None:
        _cosign.generate_key_pair(cosign, str(prefix))
    else:
        private_pem, public_pem = generate_key_pair(read_password(private, confirm=True))
        descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private_pem)
        public.write_bytes(public_pem)
    print(f"Private key written to {private}")
    print(f"Public key written to {public}")
    return EXIT_OK


# --- shared -------------------------------------------------------------------------------------


def _merge_positional(args: argparse.Namespace) -> None:
    positional = getattr(args, "positional_image", None)
    if positional is None:
        return
    flag = getattr(args, IMAGE.dest, None)
    if flag is not None and flag != positional:
        raise ConfigError(TWO_IMAGES.format(positional=positional, flag=flag))
    setattr(args, IMAGE.dest, positional)


def _image(config: Config, output: Path, verb: str) -> Reference:
    from shipml.oci import Reference

    text = config.section("sign")["image"]
    if text:
        _refuse_image_id(str(text), config.where("sign", "image"), verb)
        return Reference.parse(text, config.where("sign", "image"))
    handed = handed_on(output, "image")
    if handed is None or not handed.handoff.argument:
        raise ConfigError(NO_IMAGE.format(verb=verb))
    _refuse_image_id(handed.handoff.argument, f"{handed.source} ({handed.handoff.ref})", verb)
    return Reference.parse(handed.handoff.argument, handed.source)


def _refuse_image_id(text: str, where: str, verb: str) -> None:
    """A local image id names an image built but not pushed: no registry holds it to sign."""
    if is_local_image_id(text):
        raise ConfigError(NOT_PUSHED.format(where=where, image_id=text.strip(), verb=verb))


def _require_digest(image: Reference, config: Config) -> None:
    from shipml.sign.core import require_pinned

    require_pinned(image, config.where("sign", "image") if config.section("sign")["image"]
                   else "the image hand-off")


def _model_path(config: Config, *, strict: bool = False) -> Path | None:
    text = config.section("model").get("path")
    if not text:
        return None
    path = config.resolve_path(text, "model", "path")
    if not path.is_file():
        if strict:
            raise ConfigError(f"{config.where('model', 'path')}: model file {path} not found")
        return None
    return path


def _key_file(config: Config, text: str, key: str) -> Path | str:
    if text.startswith("env://"):
        return text
    if "://" in text:
        raise ConfigError(KEY_URI_NEEDS_COSIGN.format(key=config.where("sign", key)))
    return config.resolve_path(text, "sign", key)


def _key_argument(config: Config, text: str, key: str) -> str:
    # cosign takes KMS and k8s:// URIs as they are; a file is passed as an absolute path
    return text if "://" in text else os.path.abspath(config.resolve_path(text, "sign", key))


def _registry_options(section: dict[str, Any]) -> Any:
    from shipml.oci import RegistryOptions

    registry = section["registry"]
    return RegistryOptions(retries=registry["retries"], backoff_s=registry["backoff_s"],
                           timeout_s=registry["timeout_s"], plain_http=registry["plain_http"])


def _client(image: Reference, section: dict[str, Any]) -> RegistryClient:
    from shipml.oci import RegistryClient

    return RegistryClient(image.registry, _registry_options(section))


def _plain_http(image: Reference, section: dict[str, Any]) -> bool:
    plain = section["registry"]["plain_http"]
    return bool(plain) if plain is not None else image.is_loopback
