"""The one prompt the generation uses, and the version that makes old content stale.

Bump ``PROMPT_VERSION`` whenever the prompt or the content schema changes: every
entry generated under another version is then regenerated on its next request.
"""
from django.conf import settings

PROMPT_VERSION = "p1"

SYSTEM_PROMPT = (
    "Você é um redator sênior de e-commerce brasileiro. Escreva conteúdo de produto "
    "em português do Brasil, claro, persuasivo e fiel aos dados informados, sem "
    "inventar especificações. Responda apenas com um objeto JSON com as chaves: "
    '"title" (até 120 caracteres), "description" (2 a 4 parágrafos curtos), '
    '"bullet_points" (lista de 3 a 6 frases curtas) e "seo_keywords" (lista de 5 a 10 '
    "termos de busca em minúsculas)."
)

# What the prompt asks of each field: the answer of a generation of some fields alone.
FIELD_INSTRUCTIONS = {
    "title": '"title" (até 120 caracteres)',
    "description": '"description" (2 a 4 parágrafos curtos)',
    "bullet_points": '"bullet_points" (lista de 3 a 6 frases curtas)',
    "seo_keywords": '"seo_keywords" (lista de 5 a 10 termos de busca em minúsculas)',
}


def system_prompt(fields: tuple[str, ...] | None = None) -> str:
    """The system prompt; with ``fields``, the same one asking for those keys alone (the rest of
    the product's content is kept as it is)."""
    if fields is None:
        return SYSTEM_PROMPT
    asked = [FIELD_INSTRUCTIONS[name] for name in fields]
    keys = asked[0] if len(asked) == 1 else ", ".join(asked[:-1]) + " e " + asked[-1]
    head = SYSTEM_PROMPT.split("Responda apenas", 1)[0]
    noun = "a chave" if len(asked) == 1 else "as chaves"
    return f"{head}Responda apenas com um objeto JSON com {noun}: {keys}; nenhuma outra."

USER_PROMPT_TEMPLATE = "Dados do produto (JSON):\n{product_json}\n\nGere o conteúdo agora."

# A variant of a family (MEMORY_FAMILY_MODE=ask): a short call for its title and one bullet point;
# the rest of its content is its family's base content.
VARIANT_SYSTEM_PROMPT = (
    "Você é um redator sênior de e-commerce brasileiro. Receberá o título e os tópicos de uma "
    "família de produtos e os atributos de uma das suas variantes. Escreva, em português do Brasil, "
    "o título da variante (até 120 caracteres, com os atributos dela) e um tópico curto que diga "
    "qual é a variante, sem inventar especificações. Responda apenas com um objeto JSON com as "
    'chaves "title" e "bullet_point".'
)

VARIANT_USER_PROMPT_TEMPLATE = "Família e variante (JSON):\n{variant_json}\n\nGere o título e o tópico agora."


def current_model_name() -> str:
    """The model part of the generator version: the template writer has its own."""
    if settings.LLM_PROVIDER == "template":
        return "template"
    return settings.LLM_MODEL


def generator_version(provider: str, model: str) -> str:
    """Provider + model + prompt version (``openai:gpt-4o-mini:p1``): an entry made under
    another one is stale."""
    return f"{provider}:{model}:{PROMPT_VERSION}"


def current_generator_version() -> str:
    """The generator version of the provider and model the settings choose."""
    return generator_version(settings.LLM_PROVIDER, current_model_name())
