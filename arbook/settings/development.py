"""Development profile (the default): `DEBUG` on unless the environment says otherwise."""
from .base import *  # noqa: F401,F403
from .base import env, read_dev_secrets

read_dev_secrets()


DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY")
ARBOOK_ENCRYPTION_KEYS = env.list("ARBOOK_ENCRYPTION_KEYS")
