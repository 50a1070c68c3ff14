import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("actor_name", models.CharField(blank=True, max_length=150, verbose_name="actor name")),
                ("actor_kind", models.CharField(choices=[("staff", "staff"), ("merchant", "merchant"), ("anonymous", "anonymous")], max_length=16, verbose_name="actor kind")),
                ("action", models.CharField(max_length=100, verbose_name="action")),
                ("object_type", models.CharField(blank=True, max_length=100, verbose_name="object type")),
                ("object_id", models.CharField(blank=True, max_length=255, verbose_name="object id")),
                ("object_repr", models.CharField(blank=True, max_length=200, verbose_name="object")),
                ("changes", models.TextField(blank=True, verbose_name="changes")),
                ("ip", models.GenericIPAddressField(blank=True, null=True, verbose_name="IP address")),
                ("user_agent", models.CharField(blank=True, max_length=300, verbose_name="user agent")),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True, verbose_name="time")),
                ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL, verbose_name="actor")),
            ],
            options={
                "verbose_name": "audit entry",
                "verbose_name_plural": "audit log",
                "ordering": ["-created_at", "-pk"],
                "indexes": [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")],
            },
        ),
    ]
