"""A minimal Django project serving django-oauth-toolkit, for tests only (see ``serve.py``)."""
