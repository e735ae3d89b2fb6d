"""Request validation and response shapes of the API (the response shapes document the schema)."""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from memory.engine.freshness import EntryStatus
from memory.engine.memory import MAX_LIST_LIMIT, resolve_product
from memory.engine.validators import INT_MAX
from memory.io.formats import DEFAULT_EXPORT_FORMAT, EXPORT_FORMATS
from memory.models import DEFAULT_KIND, ContentOrigin
from memory.providers.content import CONTENT_FIELDS, check_fields

# Far beyond any table, well within PostgreSQL's bigint OFFSET.
MAX_LIST_OFFSET = 10**12


def json_type(value) -> str:
    """The pt-BR name of a parsed JSON value's type, as the client wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "booleano"
    if isinstance(value, (int, float)):
        return "número"
    if isinstance(value, (list, tuple)):
        return "lista"
    if isinstance(value, Mapping):
        return "objeto"
    return "texto" if isinstance(value, str) else type(value).__name__


class TextField(serializers.CharField):
    """JSON text only: a number, a boolean, a list, an object or null is a 400 naming the field,
    never coerced (DRF's CharField would take 123 as "123")."""

    def run_validation(self, data=empty):
        if data is not empty and not isinstance(data, str) and not (data is None and self.allow_null):
            raise serializers.ValidationError(
                f"{self.field_name} deve ser texto entre aspas, recebido {json_type(data)}.", code="invalid"
            )
        return super().run_validation(data)


class ObjectField(serializers.DictField):
    """A JSON object only, refused by name otherwise."""

    def run_validation(self, data=empty):
        if data is not empty and not isinstance(data, Mapping):
            raise serializers.ValidationError(
                f"{self.field_name} deve ser um objeto JSON ({{...}}), recebido {json_type(data)}.", code="invalid"
            )
        return super().run_validation(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: ``"true"``, ``1`` or null are a 400 naming the field (DRF's
    BooleanField would read ``"yes"`` and ``1`` as true)."""

    def run_validation(self, data=empty):
        if data is not empty and not isinstance(data, bool):
            raise serializers.ValidationError(
                f"{self.field_name} deve ser true ou false, recebido {json_type(data)}.", code="invalid"
            )
        return super().run_validation(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON whole number only: ``"3"``, ``3.0`` or true are a 400 naming the field."""

    def run_validation(self, data=empty):
        if data is not empty and (isinstance(data, bool) or not isinstance(data, int)):
            raise serializers.ValidationError(
                f"{self.field_name} deve ser um número inteiro, recebido {json_type(data)}.", code="invalid"
            )
        return super().run_validation(data)


class ContentFieldsField(serializers.ListField):
    """A list of the content schema's field names, refused in the content schema's own words."""

    child = serializers.CharField()

    def to_internal_value(self, data):
        try:
            return list(check_fields(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc).removeprefix("fields: ")) from None


class KindField(TextField):
    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", DEFAULT_KIND)
        kwargs.setdefault("help_text", f"Tipo de conteúdo (padrão: {DEFAULT_KIND}).")
        super().__init__(min_length=1, max_length=64, **kwargs)


# --- requests -----------------------------------------------------------------------


class ProductRequestSerializer(serializers.Serializer):
    """``{"product_data": {...}}`` or ``{"product_id": "..."}``: exactly one of them."""

    product_data = ObjectField(
        required=False,
        help_text="Dados do produto; o identificador sai de sku, gtin/ean ou title (nesta ordem).",
    )
    product_id = TextField(required=False, max_length=255, help_text="Identificador já normalizado.")

    def run_validation(self, data=empty):
        if data is not empty and not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: [f"O corpo deve ser um objeto JSON, recebido {json_type(data)}."]},
                code="invalid",
            )
        return super().run_validation(data)

    def validate(self, attrs):
        given = [name for name in ("product_data", "product_id") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"non_field_errors": ["Informe product_data (objeto) ou product_id (texto), um dos dois."]}
            )
        field = given[0]
        try:
            attrs["ref"] = resolve_product(attrs[field])
        except ValueError as exc:
            message = str(exc).removeprefix(f"{field}: ")
            raise serializers.ValidationError({field: [message]}) from None
        attrs["product"] = attrs[field]
        return attrs


class KindProductRequestSerializer(ProductRequestSerializer):
    kind = KindField()


class ForceRegenerateRequestSerializer(ProductRequestSerializer):
    override_approval = StrictBooleanField(
        required=False, default=False,
        help_text="Regenerar mesmo conteúdo aprovado (a aprovação é retirada); exige "
                  "memory.override_approval_productmemoryentry.",
    )
    fields = ContentFieldsField(
        required=False,
        help_text=f"Regenerar só estes campos do conteúdo ({', '.join(CONTENT_FIELDS)}); os outros ficam como estão.",
    )


class EditRequestSerializer(KindProductRequestSerializer):
    content = ObjectField(
        help_text="O conteúdo inteiro: title, description, bullet_points e seo_keywords (outras chaves são mantidas).",
    )


class ApproveRequestSerializer(KindProductRequestSerializer):
    approved = StrictBooleanField(help_text="true aprova o conteúdo atual; false retira a aprovação.")


class RestoreRequestSerializer(KindProductRequestSerializer):
    version = StrictIntegerField(min_value=1, max_value=INT_MAX, help_text="Número da versão a restaurar.")


class VersionsQuerySerializer(serializers.Serializer):
    product_id = serializers.CharField(max_length=255, help_text="Identificador do produto.")
    kind = KindField()

    def validate_product_id(self, value):
        try:
            return resolve_product(value).product_id
        except ValueError as exc:
            raise serializers.ValidationError(str(exc).removeprefix("product_id: ")) from None


class ListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=MAX_LIST_LIMIT)
    offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=MAX_LIST_OFFSET)
    search = serializers.CharField(
        required=False, allow_blank=True, max_length=255, help_text="Trecho do product_id ou do título."
    )
    kind = KindField()


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=EXPORT_FORMATS, required=False, default=DEFAULT_EXPORT_FORMAT)
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=2_000_000_000, help_text="No máximo N entradas (padrão: todas)."
    )


# --- responses ----------------------------------------------------------------------


class RedisNodeSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="host:porta")
    role = serializers.ChoiceField(choices=["master", "sentinel"])
    reached = serializers.BooleanField(help_text="Respondeu agora.")


class RedisStatsSerializer(serializers.Serializer):
    available = serializers.BooleanField()
    mode = serializers.ChoiceField(choices=["single", "sentinel", "cluster"], allow_null=True,
                                   help_text="Um servidor, Sentinel ou Cluster; null sem Redis.")
    nodes = RedisNodeSerializer(many=True, allow_null=True)
    used_memory_bytes = serializers.IntegerField(allow_null=True)
    keys = serializers.IntegerField(allow_null=True)


class DatabaseStatsSerializer(serializers.Serializer):
    vendor = serializers.CharField(required=False)
    table_bytes = serializers.IntegerField()


class BackupDirStatsSerializer(serializers.Serializer):
    path = serializers.CharField(required=False)
    bytes = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    total_entries = serializers.IntegerField()
    active_entries = serializers.IntegerField()
    expired_entries = serializers.IntegerField()
    stale_entries = serializers.IntegerField()
    approved_entries = serializers.IntegerField(help_text="Entradas com conteúdo aprovado.")
    generated_entries = serializers.IntegerField(help_text="Entradas cujo conteúdo atual foi gerado.")
    edited_entries = serializers.IntegerField(help_text="Entradas cujo conteúdo atual foi editado por uma pessoa.")
    imported_entries = serializers.IntegerField(help_text="Entradas cujo conteúdo atual veio de uma importação.")
    restored_entries = serializers.IntegerField(help_text="Entradas cujo conteúdo atual é uma versão restaurada.")
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()
    hit_rate = serializers.FloatField()
    tokens_spent = serializers.IntegerField()
    tokens_saved = serializers.IntegerField()
    tokens_wasted = serializers.IntegerField(
        help_text="Tokens cobrados por tentativas de geração que falharam ou foram descartadas.")
    tokens_saved_by_family = serializers.IntegerField(
        help_text="Tokens que as variantes derivadas do conteúdo base da sua família não custaram "
                  "(uma geração por família, não por SKU).")
    tokens_spent_ahead = serializers.IntegerField(
        help_text="Tokens gastos pela renovação antecipada (memory.refresh_ahead), parte de tokens_spent.")
    misses_avoided = serializers.IntegerField(
        help_text="Consultas que acertaram conteúdo renovado antecipadamente depois do momento em que o "
                  "conteúdo substituído deixaria de ser servido (no máximo uma por renovação).")
    estimated_cost_saved = serializers.FloatField(
        allow_null=True, help_text="USD; nulo quando LLM_PRICES não tem preço para o modelo atual.")
    # Beyond the documented figures: shown when the selector gives them.
    generations = serializers.IntegerField(required=False)
    currency = serializers.CharField(required=False)
    generator_version = serializers.CharField(required=False)
    redis = RedisStatsSerializer()
    database = DatabaseStatsSerializer()
    backup_dir = BackupDirStatsSerializer()


class EntrySummarySerializer(serializers.Serializer):
    product_id = serializers.CharField()
    kind = serializers.CharField()
    title = serializers.CharField(allow_null=True)
    hit_count = serializers.IntegerField()
    tokens_saved = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=EntryStatus.values)
    approved = serializers.BooleanField(help_text="Aprovado: servido como está, mesmo desatualizado.")
    version = serializers.IntegerField(help_text="Número da versão do conteúdo atual.")
    origin = serializers.ChoiceField(choices=ContentOrigin.values, help_text="De onde veio o conteúdo atual.")


class EntryListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = EntrySummarySerializer(many=True)


_DATETIME = serializers.DateTimeField()


class FoundSerializer(serializers.Serializer):
    found = serializers.BooleanField(default=True)
    product_id = serializers.CharField()
    kind = serializers.CharField()
    content = serializers.DictField()
    tier = serializers.ChoiceField(choices=("l1", "l2", "l3"), help_text="Camada que respondeu.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    tokens_prompt = serializers.IntegerField()
    tokens_completion = serializers.IntegerField(help_text="Inclui os tokens de raciocínio (tokens_reasoning).")
    tokens_cached = serializers.IntegerField(
        help_text="Parte de tokens_prompt que o provedor serviu do seu cache (cobrada pelo preço de prompt em cache).")
    tokens_reasoning = serializers.IntegerField(
        help_text="Parte de tokens_completion que o modelo gastou raciocinando (já contada em tokens_completion).")
    tokens_saved = serializers.IntegerField(help_text="Tokens que esta consulta economizou (o custo da geração).")
    approved = serializers.BooleanField(help_text="Conteúdo aprovado: servido como está, mesmo desatualizado.")
    status = serializers.ChoiceField(
        choices=("active", "stale"), help_text="stale: aprovado, servido embora feito por outro gerador ou outros dados.",
    )

    @staticmethod
    def from_hit(hit, status: str = "active") -> dict:
        snap = hit.snapshot
        return {
            "found": True,
            "product_id": hit.product_id,
            "kind": hit.kind,
            "content": hit.content,
            "tier": hit.tier,
            "created_at": hit.created_at,
            "expires_at": hit.expires_at,
            "tokens_prompt": snap.tokens_prompt,
            "tokens_completion": snap.tokens_completion,
            "tokens_cached": snap.tokens_cached,
            "tokens_reasoning": snap.tokens_reasoning,
            "tokens_saved": hit.tokens_saved,
            "approved": snap.approved,
            "status": status,
        }

    @classmethod
    def represent_hit(cls, hit, status: str = "active") -> dict:
        """``FoundSerializer(FoundSerializer.from_hit(hit)).data``, built directly: running every
        field's ``to_representation`` is a large share of a get served from L1
        (docs/benchmarks.md). Only the dates need a field, for DRF's date format and time zone."""
        data = cls.from_hit(hit, status)
        data["created_at"] = _DATETIME.to_representation(data["created_at"])
        data["expires_at"] = _DATETIME.to_representation(data["expires_at"])
        return data


class NotFoundSerializer(serializers.Serializer):
    found = serializers.BooleanField(default=False)
    product_id = serializers.CharField()
    status = serializers.ChoiceField(
        choices=("missing", "expired", "stale"),
        help_text="missing: nunca gerado ou removido; expired: passou de expires_at; stale: outro gerador ou outros dados.",
    )


class DeletedSerializer(serializers.Serializer):
    deleted = serializers.BooleanField()
    product_id = serializers.CharField()


class ClearedSerializer(serializers.Serializer):
    cleared = serializers.IntegerField()


class RegenerationSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    product_id = serializers.CharField()


class RegeneratedSerializer(RegenerationSerializer):
    """Eager mode: the task ran in the request; what it saved."""

    tokens_spent = serializers.IntegerField(help_text="Tokens que a geração custou.")
    content = serializers.DictField(help_text="O conteúdo salvo.")


class ProductErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    product_id = serializers.CharField()


class ContentWrittenSerializer(serializers.Serializer):
    """An edit or a restore: the entry's new current version."""

    product_id = serializers.CharField()
    kind = serializers.CharField()
    version = serializers.IntegerField(help_text="Número da nova versão (o conteúdo atual).")
    origin = serializers.ChoiceField(choices=ContentOrigin.values)
    author = serializers.CharField(allow_blank=True)
    content = serializers.DictField()
    restored_from = serializers.IntegerField(required=False, help_text="Restauração: a versão copiada.")


class ApprovalSerializer(serializers.Serializer):
    product_id = serializers.CharField()
    kind = serializers.CharField()
    approved = serializers.BooleanField()
    approved_by = serializers.CharField(allow_blank=True)
    approved_at = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField(help_text="A versão do conteúdo (aprovada, quando approved).")


class ChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    change = serializers.ChoiceField(choices=("added", "removed", "changed"))
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class VersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    origin = serializers.ChoiceField(choices=ContentOrigin.values)
    author = serializers.CharField(allow_blank=True)
    generator_version = serializers.CharField()
    tokens = serializers.IntegerField(help_text="O que escrever esta versão custou (0 para edições e restaurações).")
    created_at = serializers.DateTimeField()
    current = serializers.BooleanField()
    payload = serializers.DictField()
    changes = ChangeSerializer(
        many=True, allow_null=True,
        help_text="Campo a campo, o que mudou em relação à versão anterior (null quando ela não é mais guardada).",
    )


class VersionsSerializer(serializers.Serializer):
    product_id = serializers.CharField()
    kind = serializers.CharField()
    version = serializers.IntegerField(help_text="A versão atual.")
    approved = serializers.BooleanField()
    approved_by = serializers.CharField(allow_blank=True)
    approved_at = serializers.DateTimeField(allow_null=True)
    versions = VersionSerializer(many=True, help_text="As versões guardadas, a mais nova primeiro.")


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=("ok", "degraded", "down"))
    detail = serializers.CharField(
        required=False, help_text="Com migrações pendentes: o que fazer (Rode: python manage.py migrate).",
    )
    checks = serializers.DictField(
        child=serializers.DictField(), required=False,
        help_text="Cada verificação (database, redis, backup_dir, broker); só para quem tem memory.view_productmemoryentry.",
    )


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class UnavailableSerializer(DetailSerializer):
    product_id = serializers.CharField(required=False, help_text="Quando foi o provedor que não respondeu.")
