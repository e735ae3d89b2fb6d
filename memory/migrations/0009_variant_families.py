from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("memory", "0008_content_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="productmemoryentry",
            name="family_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=255, verbose_name="família"),
        ),
        migrations.AddIndex(
            model_name="productmemoryentry",
            index=models.Index(condition=models.Q(("family_id", ""), _negated=True), fields=["family_id"],
                               name="memory_entry_family_idx"),
        ),
        migrations.AddField(
            model_name="dailystats",
            name="tokens_saved_by_family",
            field=models.PositiveBigIntegerField(default=0, verbose_name="tokens economizados por famílias"),
        ),
    ]
