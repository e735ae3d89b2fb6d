"""Save a few sample products, read them back, and show which tier served each read."""
from django.core.cache import caches
from django.core.management.base import BaseCommand

from memory.product_memory import ProductMemory

SAMPLES = [
    ({"sku": "ABC123", "title": "Tênis de Corrida Leve", "brand": "Olympikus"}, 1500),
    ({"gtin": "7891234567895", "title": "Caneca Térmica Inox 500 ml"}, 1100),
    ({"title": "Mochila Escolar Reforçada", "brand": "Sestini"}, 1300),
]


class Command(BaseCommand):
    help = "Demonstração da memória: salva produtos de exemplo e os lê de volta."

    def handle(self, *args, **options):
        memory = ProductMemory()
        for product, tokens in SAMPLES:
            content = {
                "title": product["title"],
                "description": f"Conteúdo de exemplo para {product['title']}.",
                "bullet_points": ["Qualidade garantida"],
                "seo_keywords": [product["title"].lower()],
            }
            memory.save_product_data(product, content, tokens_prompt=tokens // 2, tokens_completion=tokens // 2)
        caches["memory_l1"].clear()
        for attempt in ("primeira", "segunda"):
            for product, _ in SAMPLES:
                hit = memory.get_product_data(product)
                self.stdout.write(f"{attempt} leitura: {hit.product_id:<45} servido por {hit.tier.upper()}")
        stats = memory.stats()
        self.stdout.write(self.style.SUCCESS(
            f"{stats['hits']} acertos, {stats['tokens_saved']} tokens economizados"
        ))
