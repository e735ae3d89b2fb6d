"""``memory.clear_productmemoryentry``: emptying the whole memory is its own permission.

Django creates the permission row after ``migrate`` (``post_migrate``); nobody holds it
until it is granted, superusers excepted.
"""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("memory", "0003_title_sort_index"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="productmemoryentry",
            options={
                "permissions": [("clear_productmemoryentry", "Pode limpar toda a memória")],
                "verbose_name": "entrada da memória",
                "verbose_name_plural": "entradas da memória",
            },
        ),
    ]
