"""Values the tests share. Obviously fake: no secret here resembles a real one."""

TEST_WEBHOOK_SECRET = "test-webhook-secret-current"
TEST_PREVIOUS_WEBHOOK_SECRET = "test-webhook-secret-previous"
TEST_FLINKS_CREDENTIALS = {"username": "test-flinks-user", "password": "test-flinks-password"}


# Base URLs no Flinks caller may take: geft.flinks_settings refuses them, and so FlinksClient and every
# function's configuration do.
REFUSED_FLINKS_BASE_URLS = [
    "",
    "payments.flinksapp.com",
    "http://payments.flinksapp.com",  # plain http off loopback
    "http://localhost.attacker.example",  # a prefix match would have taken this
    "http://127.0.0.1.attacker.example",
    "http://127.0.0.1.nip.io:8443",  # a name that resolves to loopback is still a name
    "http://127.0.0.2:8765",  # loopback network, but not the exact host
    "http://0.0.0.0:8765",
    "http://[::ffff:127.0.0.1]:8765",
    "https://10.0.0.7",  # IP addresses only for loopback
    "https://127.1",
    "https://0x7f.1",
    "https://flinks",  # not a qualified DNS name
    "https://user:secret@payments.flinksapp.com",
    "https://user:pass@payments.flinksapp.com",
    "https://payments.flinksapp.com@attacker.example",
    "https://payments.flinksapp.com/api/v2",
    "https://payments.flinksapp.com/api",
    "https://payments.flinksapp.com?x=1",
    "https://payments.flinksapp.com#frag",
    "https://payments.flinksapp.com:0",
    "https://payments.flinksapp.com:99999",
    "https://pay ments.flinksapp.com",
    "https://payments.flinksapp.com\\@attacker.example",
    "https://-bad-.flinksapp.com",
    "ftp://payments.flinksapp.com",
    "file:///etc/passwd",
]
