"""The functional core: pure decisions, no I/O, no clock (``today`` is passed in).

One module per rule of DOMAIN.md:
- ``identity``: resident ID numbers (GB 11643), other documents, masking;
- ``evidence``: whose card, proxy buyer's documents, card status;
- ``family``: which family payers may pay, and why the others are skipped;
- ``basket``: account-payable lines, prescriptions, ephedrine compounds;
- ``cascade``: the legs over the accounts and the cash rest;
- ``messages``: the cashier's words for every refusal code.
"""
