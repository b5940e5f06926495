"""A local Flinks Pay G-EFT sandbox that enforces the documented API strictly (flinks-geft.md §3-§7).

Use it in-process (``with FlinksSandbox() as sandbox: sandbox.base_url``) or as a process (``SandboxAdmin``
drives one from another process)::

    python -m geft_local.flinks_sandbox --port 8765 --username U --password P

It serves ``POST /api/v1/authorize`` and the session endpoints ``details``, ``status`` and
``guarantees/confirm``; plays per-session scenarios and fault plans; journals every API call (secrets
redacted) so tests can count exactly what a client sent; and offers an admin API under ``/_sandbox/``
so another process can register sessions and read their state. ``emit_guarantee_webhook`` plays
Flinks' side of the guarantee webhook (signed ``X-Webhook-Signature: sha256=<HEX>``).

Tokens: each is bound to the first session it is used on (one token per session, §3.3) and refused
(401) after its ``expires_in`` (``token_ttl_s``).

A session can receive further guarantees (Flinks' Next Best Offer): ``offer_guarantee`` (or the admin
API) adds one; ``/details`` then shows that offer's amount, highest debit amount and, when the scenario
exposes ids, its ``guaranteeId``; ``guaranteeAccepted`` either resets to null for the new offer or
stays at the last decided offer's value (``Scenario.nbo_guarantee_accepted``: ``reset``/``sticky``).
Confirms apply to the current offer and are journaled with its number.

Fault kinds (per endpoint, played in order; see ``Fault``): an HTTP status (``503``,
``429:retry-after=2``), ``timeout``, ``malformed``, ``reset``, ``lost``, ``oversize:N`` and
``oversize-chunked:N`` (a 2xx body of N bytes, streamed), ``dribble:S`` and ``dribble-body:S`` (one
byte every S seconds), and for confirms ``slow-apply:S`` (applied and answered S seconds late).
A scenario's ``details_patch`` and ``status_patch`` (JSON merge patches) shape its answers otherwise
than documented: a field dropped, renamed or of another type (``make contract``'s tests).

Admin API (JSON; errors are ProblemDetails: 400 bad input, 404 unknown session or path)::

    GET    /_sandbox/health                      {"ok": true}
    GET    /_sandbox/calls                       {"calls": [journal entries]}
    POST   /_sandbox/sessions                    a Scenario's fields (snake_case), optional "preset"
                                                 and "session_id" -> 201 {"sessionId": "..."}
    GET    /_sandbox/sessions/{id}               state: referenceId, decision, status, statusDetails,
                                                 pendingFaults, offers (each with its confirms),
                                                 confirms, calls
    POST   /_sandbox/sessions/{id}/status        {"status": "...", "statusDetails": "..." | null}
    POST   /_sandbox/sessions/{id}/faults        {"details": ["503", ...], "confirm": [...], ...}
    DELETE /_sandbox/sessions/{id}/faults        forget the planned faults (Flinks recovered)
    POST   /_sandbox/sessions/{id}/offers        {"amount": N, "highestDebitAmountToGuarantee": N?,
                                                 "guaranteeId": "..."?} -> 201 with the state

Stdlib only. Every sleep and hang has a ceiling, and ``stop()`` wakes them and frees the port.

Modules: ``scenarios`` (Scenario, Fault), ``sandbox`` (state and endpoints), ``responses`` (bodies and
the transport's misbehaviour), ``server`` (HTTP), ``webhooks`` (the emitter), ``admin`` (the admin
API's client).
"""

from testkit.flinks.admin import SandboxAdmin
from testkit.flinks.sandbox import DEFAULT_PASSWORD, DEFAULT_USERNAME, FlinksSandbox, JournalEntry
from testkit.flinks.scenarios import Fault, Scenario
from testkit.flinks.webhooks import DeliveryResult, emit_guarantee_webhook, guarantee_webhook_body, sign_body

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "DeliveryResult",
    "Fault",
    "FlinksSandbox",
    "JournalEntry",
    "SandboxAdmin",
    "Scenario",
    "emit_guarantee_webhook",
    "guarantee_webhook_body",
    "sign_body",
]
