"""Values the tests share. Obviously fake: no secret here resembles a real one."""

TEST_WEBHOOK_SECRET = "test-webhook-secret-current"
TEST_PREVIOUS_WEBHOOK_SECRET = "test-webhook-secret-previous"
TEST_FLINKS_CREDENTIALS = {"username": "test-flinks-user", "password": "test-flinks-password"}
