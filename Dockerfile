# Cardvault: one image for the web server, the Celery worker and Celery beat.
FROM python:3.11-slim

# The settings find templates/, static/ and locale/ next to config/ (BASE_DIR), and those folders
# are not part of the installed package: everything runs from the source tree in /app, which
# PYTHONPATH puts ahead of the copy pip installs into site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    PYTHONPATH=/app

WORKDIR /app

COPY . .

RUN pip install . \
    && rm -rf build ./*.egg-info

# Build-time only: the production settings refuse to load without their secrets, and
# collectstatic/compilemessages read no database and decrypt nothing, so throw-away values do.
# Translations are compiled if the tree has catalogues (gettext is removed again afterwards).
RUN export SECRET_KEY=build-only-not-a-secret-build-only-not-a-secret-0123456789 \
        DATABASE_URL=postgres://build@127.0.0.1:5432/build \
        CARD_KEYRING=build:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
        CARD_FINGERPRINT_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    && python manage.py collectstatic --noinput \
    && if find . -name '*.po' -path '*/LC_MESSAGES/*' | grep -q .; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gettext \
        && python manage.py compilemessages \
        && apt-get purge -y --auto-remove gettext \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cardvault
# Uploads (merchant documents, dispute screenshots) are the only files the app writes; the
# directory is owned by the app's user, and Compose mounts a named volume over it.
RUN mkdir -p /app/media && chown cardvault /app/media
USER cardvault

EXPOSE 8000

# Two workers with four threads each: the sandbox pay page calls back into this same server, so
# a single request slot would wait on itself. Override `command` to size it for your machine.
CMD ["gunicorn", "config.wsgi:application", \
     "--config", "python:config.gunicorn", \
     "--bind", "0.0.0.0:8000", \
     "--workers", "2", \
     "--threads", "4", \
     "--worker-tmp-dir", "/dev/shm", \
     "--access-logfile", "-"]
