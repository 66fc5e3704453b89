"""devreg's real test environment, behind `scripts/testenv` (see docs/testenv.md).

Python 3.11 standard library only: it runs before `pip install -e .`.  `cli` is the
command line and the table of parts; `common` what every part uses; one module per part
(`docker`, `images`, `registry`, `controlplane`) and its helpers (`gobuild`, `pki`,
`provisioner`).
"""
