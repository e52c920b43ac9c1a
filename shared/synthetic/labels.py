"""Retailers' own words for categories, customer segments and products.

Real shops never write taxonomy codes: one says "Getränke", another "BEVERAGES". Drawing each
retailer's labels from these tables exercises the importer's category mapping, and every label
here is one the shipped taxonomy matcher resolves to its code (the tests hold that).
"""

from __future__ import annotations

import re

import numpy as np

from shared.taxonomy import Taxonomy

# Display forms per taxonomy code and language; the taxonomy stores them accent-folded.
CATEGORY_LABELS: dict[str, dict[str, tuple[str, ...]]] = {
    "bakery": {
        "en": ("Bakery", "Bread", "Baked goods", "Pastries", "Breads"),
        "de": ("Backwaren", "Brot"),
        "fr": ("Boulangerie",),
        "es": ("Panadería",),
    },
    "dairy": {
        "en": ("Dairy", "Dairy and eggs", "Milk", "Cheese", "Eggs"),
        "de": ("Molkerei", "Milchprodukte", "Käse"),
        "fr": ("Crèmerie",),
        "es": ("Lácteos",),
    },
    "produce": {
        "en": ("Fruit and vegetables", "Fresh produce", "Vegetables", "Fruit", "Veg"),
        "de": ("Obst und Gemüse", "Obst", "Gemüse"),
        "fr": ("Fruits et légumes",),
        "es": ("Frutas", "Verduras"),
    },
    "meat_fish": {
        "en": ("Meat and fish", "Meat", "Butcher", "Seafood", "Deli meat", "Poultry"),
        "de": ("Fleisch", "Fisch", "Wurst"),
        "fr": ("Boucherie",),
        "es": ("Carne", "Pescado"),
    },
    "pantry": {
        "en": ("Pantry", "Dry goods", "Grocery", "Groceries", "Canned", "Condiments"),
        "de": ("Trockenware", "Konserven"),
        "fr": ("Épicerie",),
        "es": ("Despensa",),
    },
    "snacks": {
        "en": ("Snacks", "Confectionery", "Sweets", "Candy", "Crisps", "Chocolate", "Biscuits"),
        "de": ("Süßigkeiten", "Knabberzeug"),
        "fr": ("Confiserie",),
        "es": ("Golosinas",),
    },
    "beverages": {
        "en": ("Soft drinks", "Beverages", "Drinks", "Juice", "Soda"),
        "de": ("Getränke", "Kaffee", "Tee"),
        "fr": ("Boissons",),
        "es": ("Bebidas",),
    },
    "alcohol": {
        "en": ("Beer, wine and spirits", "Beer", "Wine", "Spirits", "Liquor", "Alcohol"),
        "de": ("Bier", "Wein", "Spirituosen"),
        "fr": ("Vins",),
        "es": ("Cerveza", "Vino"),
    },
    "frozen": {
        "en": ("Frozen", "Frozen food", "Ice cream"),
        "de": ("Tiefkühl", "Tiefkühlkost"),
        "fr": ("Surgelés",),
        "es": ("Congelados",),
    },
    "household": {
        "en": ("Household", "Cleaning", "Detergent", "Paper goods", "Household and cleaning"),
        "de": ("Haushalt", "Reinigung"),
        "fr": ("Droguerie", "Entretien"),
        "es": ("Limpieza",),
    },
    "personal_care": {
        "en": ("Personal care", "Health", "Beauty", "Cosmetics", "Toiletries", "Hygiene"),
        "de": ("Körperpflege", "Drogerie"),
        "fr": ("Hygiène beauté",),
        "es": ("Cuidado personal",),
    },
    "baby": {
        "en": ("Baby", "Infant", "Nappies", "Diapers"),
        "de": ("Babybedarf",),
        "fr": ("Bébé",),
        "es": ("Bebé",),
    },
    "pet": {
        "en": ("Pet supplies", "Pet food", "Pets", "Pet"),
        "de": ("Tierbedarf", "Tiernahrung"),
        "fr": ("Animalerie",),
        "es": ("Mascotas",),
    },
    "home_garden": {
        "en": ("Home and garden", "Garden", "Homeware", "Housewares", "Kitchen", "Hardware"),
        "de": ("Haus und Garten", "Garten"),
        "fr": ("Jardin",),
        "es": ("Hogar",),
    },
    "clothing": {
        "en": ("Clothing", "Apparel", "Fashion", "Shoes", "Accessories"),
        "de": ("Bekleidung", "Mode", "Schuhe"),
        "fr": ("Vêtements",),
        "es": ("Ropa",),
    },
    "electronics": {
        "en": ("Electronics", "Electrical", "Phones", "Batteries", "Audio"),
        "de": ("Elektronik",),
        "fr": ("Électronique",),
        "es": ("Electrónica",),
    },
    "toys_hobby": {
        "en": ("Toys", "Games", "Books", "Stationery", "Hobby", "Crafts"),
        "de": ("Spielwaren", "Bücher", "Schreibwaren"),
        "fr": ("Jouets",),
        "es": ("Juguetes", "Papelería"),
    },
}

# Label styles a dialect can ask for: which languages to draw from and how to write them.
LABEL_STYLES: dict[str, tuple[tuple[str, ...], str]] = {
    "en_title": (("en",), "as_is"),
    "en_upper": (("en",), "upper"),
    "en_lower": (("en",), "lower"),
    "en_snake": (("en",), "snake"),
    "de": (("de",), "as_is"),
    "fr_es": (("fr", "es"), "as_is"),
}

# The first noun of every category carries an accent so legacy encodings are exercised.
PRODUCT_NOUNS: dict[str, tuple[str, ...]] = {
    "bakery": ("Pain de campagne", "Sourdough loaf", "Croissant", "Rye bread", "Bagels"),
    "dairy": ("Crème fraîche", "Whole milk", "Greek yoghurt", "Cheddar", "Free-range eggs"),
    "produce": ("Jalapeño peppers", "Bananas", "Apples", "Tomatoes", "Carrots"),
    "meat_fish": ("Pâté", "Chicken breast", "Salmon fillet", "Minced beef", "Smoked ham"),
    "pantry": ("Purée de tomates", "Spaghetti", "Basmati rice", "Olive oil", "Oats"),
    "snacks": ("Crème brûlée biscuits", "Potato crisps", "Dark chocolate", "Gummy bears"),
    "beverages": ("Café au lait", "Orange juice", "Sparkling water", "Cola", "Green tea"),
    "alcohol": ("Rosé wine", "Lager", "Pale ale", "Red wine", "Cider"),
    "frozen": ("Sorbet à la fraise", "Frozen peas", "Fish fingers", "Vanilla ice cream"),
    "household": ("Lessive écologique", "Dish soap", "Paper towels", "Bin bags", "Sponges"),
    "personal_care": ("Crème hydratante", "Toothpaste", "Shampoo", "Deodorant", "Hand soap"),
    "baby": ("Purée bébé", "Nappies", "Baby wipes", "Baby lotion"),
    "pet": ("Pâtée chat", "Dog food", "Cat litter", "Bird seed", "Dog treats"),
    "home_garden": ("Sécateur", "Plant pot", "Light bulbs", "Garden gloves", "Candles"),
    "clothing": ("Béret", "Socks", "T-shirt", "Scarf", "Gloves"),
    "electronics": ("Câble USB", "AA batteries", "Headphones", "Phone charger", "SD card"),
    "toys_hobby": ("Poupée", "Puzzle", "Notebook", "Playing cards", "Board game"),
}
PACK_SIZES = ("250g", "500g", "1kg", "1L", "6-pack", "2x", "XL", "family size", "mini")

# Canonical customer segments the simulation knows; dialects print their own words for them.
SEGMENTS = ("loyalty", "walk-in", "business")


def _write(label: str, case: str) -> str:
    if case == "upper":
        return label.upper()
    if case == "lower":
        return label.lower()
    if case == "snake":
        return re.sub(r"\W+", "_", label.lower()).strip("_")
    return label


def category_labels(
    codes: tuple[str, ...], style: str, taxonomy: Taxonomy, rng: np.random.Generator
) -> dict[str, str]:
    """One distinct label per code in the retailer's style; taxonomy name when no table entry."""
    languages, case = LABEL_STYLES[style]
    names = {category.code: category.name for category in taxonomy.categories}
    labels: dict[str, str] = {}
    for code in codes:
        table = CATEGORY_LABELS.get(code, {})
        candidates = [label for lang in languages for label in table.get(lang, ())]
        label = str(candidates[int(rng.integers(len(candidates)))]) if candidates else names[code]
        label = _write(label, case)
        if label in labels.values():
            label = _write(names[code], case)
        labels[code] = label
    return labels


def product_names(code: str, count: int, rng: np.random.Generator) -> list[str]:
    """Readable product descriptions; the first of each category has an accented letter."""
    nouns = PRODUCT_NOUNS.get(code, (code.replace("_", " ").capitalize(),))
    sizes = rng.integers(len(PACK_SIZES), size=count)
    return [f"{nouns[i % len(nouns)]} {PACK_SIZES[s]}" for i, s in enumerate(sizes.tolist())]
