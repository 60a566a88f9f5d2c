"""The Backendless Device Registration wire contract (docs/design.md §5), over real HTTP.

Every test talks to a real devreg worker process on the session's Tansu broker and checks the
bodies byte-for-byte where the SDKs depend on them: status, `{code, message, errorData}` on
errors, `{"registrationId": ...}` on register, a one-element list on GET, `{"result": true}`
on DELETE. Each test uses device ids of its own, so all the modules here share one worker
(conftest.py).
"""
