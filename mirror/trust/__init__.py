"""Signature policy: which images may move (containers-policy.json(5), sigstore signatures).

- `policy.py`: the policy file read into a `Policy`, requirements by scope;
- `identity.py`: `signedIdentity`, as containers/image matches it;
- `keys.py`: public keys and certificates read from PEM;
- `payload.py`: cosign's simple-signing payload, read strictly;
- `rekor.py`, `fulcio.py`: the Rekor signed entry timestamp and the Fulcio certificate;
- `verify.py`: one signature judged against one `sigstoreSigned` requirement;
- `signatures.py`: where an image's signatures are found (digest tags, referrers);
- `admission.py`: `admit`, the decision before any byte of an image moves.

Everything is checked offline, over `cryptography`, from files the user gives.
"""
