"""A household's life with its fridge, day by day: what it eats, buys, opens and throws away.

Unlike :class:`simulator.household.VirtualHousehold` (random scans for the demo), a
:class:`Household` has a size and a diet, a portfolio of products each eaten at its own rate, a
weekday rhythm with noise, shopping trips outside the system (the packs are scanned in on return),
waste when packs expire, holidays, guests, and tastes that drift over the months. Every day yields
the scanner lines the household's actions make at the fridge, and the *truth*: what was actually
eaten, bought and wasted, and what it wanted but did not have, so that forecasts can be scored.

Everything comes from one ``random.Random(seed)``: the same seed and start give the same life.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from simulator.catalog import CATALOG, Product
from simulator.retailer import Order, OrderLine, OrderStatus, Retailer


class Diet(StrEnum):
    """What a household eats; it narrows the catalog its portfolio is drawn from."""

    OMNIVORE = "omnivore"
    VEGETARIAN = "vegetarian"
    VEGAN = "vegan"


# Categories a diet leaves out of the portfolio.
EXCLUDED: dict[Diet, frozenset[str]] = {
    Diet.OMNIVORE: frozenset(),
    Diet.VEGETARIAN: frozenset({"meat", "fish", "deli"}),
    Diet.VEGAN: frozenset({"meat", "fish", "deli", "dairy", "cheese", "eggs", "desserts", "baby"}),
}
# Packs one person gets through in a week, by category: the scale of each product's rate.
WEEKLY_PACKS_PER_PERSON: dict[str, float] = {
    "dairy": 1.2,
    "cheese": 0.5,
    "eggs": 0.25,
    "meat": 0.6,
    "fish": 0.3,
    "deli": 0.5,
    "vegetables": 1.0,
    "fruit": 0.8,
    "bakery": 0.5,
    "drinks": 1.5,
    "ready_meals": 0.4,
    "condiments": 0.08,
    "desserts": 0.5,
    "frozen": 0.25,
    "plant_based": 0.6,
    "baby": 1.5,
}
DEFAULT_WEEKLY_PACKS = 0.4
# What one use takes, in packs, by category: a glass of milk, a slice of cheese, a meal's meat.
# Food eaten in one go once opened (an opened shelf life of two days or less) is a whole pack.
PORTION: dict[str, float] = {
    "dairy": 0.2,
    "cheese": 0.15,
    "eggs": 0.2,
    "meat": 1.0,
    "fish": 1.0,
    "deli": 0.25,
    "vegetables": 0.34,
    "fruit": 0.25,
    "bakery": 0.25,
    "drinks": 0.25,
    "ready_meals": 1.0,
    "condiments": 0.05,
    "desserts": 0.5,
    "frozen": 0.5,
    "plant_based": 0.25,
    "baby": 0.2,
}
DEFAULT_PORTION = 0.25
WHOLE_PACK_WITHIN_DAYS = 2
# A use's size varies a little around the portion (log-normal sigma).
PORTION_NOISE = 0.2
# Categories whose products stand in for each other at a meal: with no fish, the chicken.
FLEXIBLE = frozenset({"meat", "fish", "ready_meals", "vegetables", "fruit"})
# Eating at home through the week, Monday first: more at weekends.
WEEKDAY_FACTOR = (0.9, 0.9, 0.95, 0.95, 1.0, 1.25, 1.2)
# Monthly multiplicative drift of each product's rate (log-normal sigma), and the chance a month
# replaces one product of the portfolio with another of its category.
MONTHLY_DRIFT = 0.15
MONTHLY_SWAP = 0.3
# A household that finishes a product's opened pack before it spoils eats at least this share of
# a pack over its opened shelf life; most households do so for most products (food waste in homes
# is a tenth to a fifth of what they buy, not half).
FINISHED_IN_TIME = 0.8
FINISHES_IN_TIME_SHARE = 0.85
# Chances an offer is taken: of a product the household eats and will run out of within
# OFFER_NEED_DAYS, one it eats, something new from an aisle it shops, anything else.
OFFER_NEED_DAYS = 3.0
OFFER_TAKE_RUNNING_OUT = 0.6
OFFER_TAKE_EATEN = 0.15
OFFER_TAKE_SAME_AISLE = 0.06
OFFER_TAKE_OTHER = 0.02
# A trip buys for this many days beyond the next planned trip: households keep a margin.
SAFETY_DAYS = 1.5


@dataclass(frozen=True, slots=True)
class Profile:
    """Who lives here and how they shop."""

    size: int = 2
    diet: Diet = Diet.OMNIVORE
    portfolio_size: int = 24
    shopping_interval_days: float = 4.0  # mean days between trips
    holidays_per_year: float = 2.0  # away 4-14 days each
    guest_days_per_month: float = 2.0

    @classmethod
    def draw(cls, rng: random.Random) -> Profile:
        """Return a plausible profile: sizes 1-5, mostly omnivores."""
        size = rng.choices([1, 2, 3, 4, 5], weights=[28, 34, 16, 15, 7])[0]
        diet = rng.choices(list(Diet), weights=[85, 11, 4])[0]
        return cls(
            size=size,
            diet=diet,
            portfolio_size=rng.randint(14, 22) + 3 * size,
            shopping_interval_days=rng.choice([2.0, 3.0, 3.5, 4.0, 5.0, 7.0]),
            holidays_per_year=rng.choice([0.0, 1.0, 2.0, 3.0]),
            guest_days_per_month=rng.choice([0.0, 1.0, 2.0, 4.0]),
        )


class Shopping(StrEnum):
    """How a household restocks."""

    STORE = "store"  # trips to a shop outside the system; the packs are scanned in on return
    ONLINE = "online"  # its own orders to the retailer, delivered after the lead time
    PLANNER = "planner"  # someone else (the planner) orders for it; it only puts deliveries away


class ActionKind(StrEnum):
    """What the household does at the fridge."""

    PUT_IN = "put_in"  # a pack scanned in on return from shopping
    OPEN = "open"
    USE_UP = "use_up"  # a pack taken out and finished
    DISCARD = "discard"  # thrown away, expired
    POUR = "pour"  # a pack taken out, partly used and put back: weighed, not scanned


# Actions the household makes at the scanner; a pour only shows on a weight shelf.
SCANNED = frozenset({ActionKind.PUT_IN, ActionKind.OPEN, ActionKind.USE_UP, ActionKind.DISCARD})


@dataclass(frozen=True, slots=True)
class Action:
    """One thing the household does to one pack, and the scanner line it types.

    ``pack`` tells the household's packs apart (a weight shelf needs to know which one moved);
    ``left`` is the share of the pack left after the action.
    """

    at: datetime
    kind: ActionKind
    code: str
    pack: int = 0
    left: float = 1.0

    @property
    def line(self) -> str:
        """Return the edge scanner's line for this action; a pour has none."""
        match self.kind:
            case ActionKind.PUT_IN:
                return f"+{self.code}"
            case ActionKind.OPEN:
                return f"open {self.code}"
            case ActionKind.USE_UP:
                return f"-{self.code}"
            case ActionKind.DISCARD:
                return f"discard {self.code} expired"
            case ActionKind.POUR:
                raise ValueError("a pour is not scanned: only a weight shelf sees it")


@dataclass
class DayTruth:
    """What really happened on one day, in packs: the yardstick for forecasts."""

    day: date
    eaten: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # in packs
    wanted_missing: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Wanted, missing, and replaced by another product of its category that was there (in packs).
    substituted: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    bought: Counter[str] = field(default_factory=Counter)  # packs that came in, by trip or delivery
    ordered: Counter[str] = field(default_factory=Counter)  # packs the household ordered itself
    wasted: Counter[str] = field(default_factory=Counter)  # packs thrown away, whatever was left
    wasted_amount: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # in packs
    stock: dict[str, float] = field(default_factory=dict)  # packs at the end of the day
    away: bool = False
    guests: int = 0
    shopping: bool = False


@dataclass
class _Pack:
    code: str  # what the barcode says
    habit: str  # the product it is eaten as: itself, or the one it substitutes
    left: float  # fraction of the pack
    expires: date
    opened: bool = False
    id: int = 0


@dataclass
class _Habit:
    product: Product
    packs_per_day: float
    portion: float = 1.0  # packs one use takes


class Household:
    """One household's days; call :meth:`live` once per day, in order."""

    def __init__(
        self,
        seed: int,
        start: date,
        *,
        profile: Profile | None = None,
        catalog: Sequence[Product] = CATALOG,
        name: str = "household",
        shopping: Shopping = Shopping.STORE,
        retailer: Retailer | None = None,
    ) -> None:
        if shopping is not Shopping.STORE and retailer is None:
            raise ValueError(f"a household that shops {shopping} needs a retailer")
        self.seed = seed
        self.name = name
        self.shopping = shopping
        self._retailer = retailer
        self._rng = random.Random(seed)
        # When things happen within a day comes from a generator of its own: what the household
        # eats, and when it is away or has guests, stay the same whatever its fridge holds (so
        # that reorder policies are compared on the same lives).
        self._times = random.Random(seed * 2 + 1)
        self.profile = profile or Profile.draw(self._rng)
        excluded = EXCLUDED[self.profile.diet]
        self._by_code = {p.code: p for p in catalog}
        self._catalog = [p for p in catalog if p.category not in excluded]
        if not self._catalog:
            raise ValueError(f"no product in the catalog suits a {self.profile.diet} diet")
        count = min(self.profile.portfolio_size, len(self._catalog))
        self._habits = [self._habit(p) for p in self._rng.sample(self._catalog, count)]
        self._packs: list[_Pack] = []
        self._pack_ids = 0
        self._had: set[str] = set()  # products that were ever in the fridge
        self._used_at: dict[int, datetime] = {}  # pack -> when it was last used today
        self._today = start
        self._next_trip = start  # stock up on the first day, at a shop whatever the mode
        self._store_trip = True  # the next trip is to a shop (the first, or after a failed order)
        self._on_order: Counter[str] = Counter()
        self._away_until: date | None = None
        self.history: list[DayTruth] = []

    @property
    def portfolio(self) -> list[tuple[Product, float]]:
        """Return each product the household eats with its current rate in packs per day."""
        return [(h.product, h.packs_per_day) for h in self._habits]

    def stock(self) -> Counter[str]:
        """Return the packs in the fridge per product eaten, an opened pack counting as one."""
        return Counter(pack.habit for pack in self._packs)

    def takes_offer(self, code: str, draw: float) -> bool:
        """Return whether the household accepts an offer of ``code``, given a uniform ``draw``.

        A person takes what they eat and are about to run out of, now and then what they eat anyway,
        rarely something new from an aisle they shop, and hardly ever anything else.
        """
        habit = next((h for h in self._habits if h.product.code == code), None)
        if habit is not None:
            left = self._stock_fractions().get(code, 0.0) + self._on_order[code]
            days = left / max(habit.packs_per_day, 1e-6)
            return draw < (OFFER_TAKE_RUNNING_OUT if days < OFFER_NEED_DAYS else OFFER_TAKE_EATEN)
        product = self._by_code.get(code)
        aisles = {h.product.category for h in self._habits}
        if product is not None and product in self._catalog and product.category in aisles:
            return draw < OFFER_TAKE_SAME_AISLE
        return draw < OFFER_TAKE_OTHER

    def stock_left(self) -> dict[str, float]:
        """Return what is left in the fridge per product eaten, in packs (an opened pack partly)."""
        return self._stock_fractions()

    def live(self) -> tuple[list[Action], DayTruth]:
        """Live the next day; return its actions in time order and its truth."""
        day = self._today
        truth = DayTruth(day)
        self._used_at.clear()
        actions: list[Action] = []
        if day.day == 1 and self.history:
            self._drift()
        self._maybe_leave(day)
        truth.away = self._away_until is not None and day < self._away_until
        actions += self._discard_expired(day, truth)
        if not truth.away:
            if day >= self._next_trip and (self._store_trip or self.shopping is not Shopping.PLANNER):
                actions += self._shop(day, truth)
            elif self.shopping is Shopping.PLANNER and (new := self._never_had()):
                # Nobody can order what the fridge has never seen: a new taste is first bought in a shop.
                actions += self._shop(day, truth, only=new)
            truth.guests = self._guests()
            actions += self._eat(day, truth)
        # Deliveries come in the evening, after the day's eating; the packs are there from tomorrow.
        actions += self._take_deliveries(day, truth)
        truth.stock = self._stock_fractions()
        self.history.append(truth)
        self._today = day + timedelta(days=1)
        actions.sort(key=lambda action: action.at)
        return actions, truth

    # -- the day's parts ----------------------------------------------------------------------

    def _habit(self, product: Product) -> _Habit:
        weekly = WEEKLY_PACKS_PER_PERSON.get(product.category, DEFAULT_WEEKLY_PACKS)
        # Larger households share more; one person's taste differs from another's.
        per_day = weekly / 7 * self.profile.size**0.8 * self._rng.lognormvariate(0, 0.5)
        per_day /= 2  # a portfolio of many products shares the appetite
        # People mostly buy what they finish before it spoils: most finish an opened pack in time,
        # some do not (the household's waste).
        keeps = product.opened_shelf_life_days or product.shelf_life_days
        if per_day * keeps < FINISHED_IN_TIME and self._rng.random() < FINISHES_IN_TIME_SHARE:
            per_day = self._rng.uniform(FINISHED_IN_TIME, 1.2) / max(keeps, 1)
        portion = PORTION.get(product.category, DEFAULT_PORTION)
        opened = product.opened_shelf_life_days
        if opened is not None and opened <= WHOLE_PACK_WITHIN_DAYS:
            portion = 1.0
        # More people take more at once (a family's meal), up to the whole pack.
        return _Habit(product, per_day, min(1.0, portion * min(self.profile.size, 4) ** 0.5))

    def _maybe_leave(self, day: date) -> None:
        if self._away_until is not None and day >= self._away_until:
            self._away_until = None
            self._next_trip = day  # back home to an empty-ish fridge: shop today
        if self._away_until is None and self._rng.random() < self.profile.holidays_per_year / 365:
            self._away_until = day + timedelta(days=self._rng.randint(4, 14))

    def _guests(self) -> int:
        if self._rng.random() < self.profile.guest_days_per_month / 30:
            return self._rng.randint(1, 4)
        return 0

    def _at(self, day: date, start_hour: float, end_hour: float) -> datetime:
        hour = self._times.uniform(start_hour, end_hour)
        return datetime.combine(day, time()) + timedelta(hours=hour)

    def _discard_expired(self, day: date, truth: DayTruth) -> list[Action]:
        actions = []
        for pack in [p for p in self._packs if p.expires < day]:
            self._packs.remove(pack)
            truth.wasted[pack.habit] += 1
            truth.wasted_amount[pack.habit] += pack.left
            actions.append(Action(self._at(day, 7, 8), ActionKind.DISCARD, pack.code, pack.id, pack.left))
        return actions

    def _never_had(self) -> set[str]:
        return {h.product.code for h in self._habits} - self._had

    def _shop(self, day: date, truth: DayTruth, only: set[str] | None = None) -> list[Action]:
        interval = max(1.0, self._rng.gauss(self.profile.shopping_interval_days, 1.0))
        if only is None:
            self._next_trip = day + timedelta(days=round(interval))
        store = self._store_trip or self.shopping is not Shopping.ONLINE or only is not None
        self._store_trip = False
        lead = 0 if store else self._lead_days()
        basket = self._basket(interval + lead)
        if only is not None:
            basket = [(code, packs) for code, packs in basket if code in only]
        if not store:
            if basket:
                assert self._retailer is not None  # checked in __init__
                lines = [OrderLine(code, packs) for code, packs in basket]
                self._retailer.place(self.name, lines, self._at(day, 7, 9))
                for code, packs in basket:
                    self._on_order[code] += packs
                    truth.ordered[code] += packs
            return []
        truth.shopping = True
        # Shopping in the morning, eating after: a pack is in the fridge before it is opened.
        home = self._at(day, 9, 11)
        actions: list[Action] = []
        for code, packs in basket:
            product = self._by_code[code]
            for _ in range(packs):
                pack = self._new_pack(code, code, day + timedelta(days=product.shelf_life_days))
                truth.bought[code] += 1
                # One pack after the other, ten seconds apart: scanned, then put in its place.
                at = home + timedelta(seconds=10 * len(actions))
                actions.append(Action(at, ActionKind.PUT_IN, code, pack.id))
        return actions

    def _lead_days(self) -> int:
        return self._retailer.lead_time_days if self._retailer is not None else 0

    def _basket(self, horizon_days: float) -> list[tuple[str, int]]:
        """Return the packs per product to buy for ``horizon_days`` plus a margin."""
        stock, packs_held = self._stock_fractions(), self.stock()
        basket = []
        for habit in self._habits:
            product = habit.product
            have = stock.get(product.code, 0.0) + self._on_order[product.code]
            needed = habit.packs_per_day * (horizon_days + SAFETY_DAYS) - have
            # Whole packs, at most what the household keeps, and only what would be eaten in time.
            usable = habit.packs_per_day * product.shelf_life_days
            held = packs_held[product.code] + self._on_order[product.code]
            packs = min(math.ceil(max(needed, 0.0)), product.max_units - held)
            packs = min(packs, max(1, math.floor(usable)))
            if packs > 0:
                basket.append((product.code, packs))
        return basket

    def _take_deliveries(self, day: date, truth: DayTruth) -> list[Action]:
        if self._retailer is None:
            return []
        actions = []
        for order in self._retailer.deliveries(self.name, day):
            actions += self._put_away(order, day, truth)
        return actions

    def _put_away(self, order: Order, day: date, truth: DayTruth) -> list[Action]:
        for ordered in order.lines:
            self._on_order[ordered.code] = max(0, self._on_order[ordered.code] - ordered.quantity)
        if order.status is OrderStatus.FAILED:
            if self.shopping is Shopping.ONLINE:
                self._next_trip, self._store_trip = day + timedelta(days=1), True  # to the shop, then
            return []
        actions = []
        at = max(order.due.replace(tzinfo=None), datetime.combine(day, time()))
        for line in order.delivered:
            product = self._by_code.get(line.code)
            shelf_life = product.shelf_life_days if product is not None else 7
            for n in range(line.quantity):
                pack = self._new_pack(line.code, line.ordered, day + timedelta(days=shelf_life))
                truth.bought[line.ordered] += 1
                actions.append(Action(at + timedelta(seconds=10 * n), ActionKind.PUT_IN, line.code, pack.id))
            at += timedelta(seconds=10 * line.quantity)
        return actions

    def _eat(self, day: date, truth: DayTruth) -> list[Action]:
        appetite = WEEKDAY_FACTOR[day.weekday()] * (1 + truth.guests / self.profile.size)
        actions = []
        for habit in self._habits:
            # Uses come as a Poisson count a day, each about a portion: most products are not used
            # every day, and a meal takes the whole pack.
            uses = _poisson(self._rng, habit.packs_per_day * appetite / habit.portion)
            demand = sum(habit.portion * self._rng.lognormvariate(0, PORTION_NOISE) for _ in range(uses))
            if demand > 0:
                actions += self._consume(day, habit.product, demand, truth)
        return actions

    def _consume(self, day: date, product: Product, demand: float, truth: DayTruth) -> list[Action]:
        actions: list[Action] = []
        while demand > 1e-9:
            packs = sorted(
                (p for p in self._packs if p.habit == product.code), key=lambda p: (not p.opened, p.expires)
            )
            if not packs and product.category in FLEXIBLE:
                # No fish tonight? Then the chicken: a meal or a vegetable is chosen from what is
                # there, the one that spoils first; the fish is still wanted another day.
                same = {h.product.code for h in self._habits if h.product.category == product.category}
                packs = sorted(
                    (p for p in self._packs if p.habit in same), key=lambda p: (not p.opened, p.expires)
                )
                if packs:
                    truth.substituted[product.code] += demand
            if not packs:
                truth.wanted_missing[product.code] += demand
                break
            pack = packs[0]
            if not pack.opened:
                pack.opened = True
                kind = self._by_code.get(pack.code, product)
                if kind.opened_shelf_life_days is not None:
                    pack.expires = min(pack.expires, day + timedelta(days=kind.opened_shelf_life_days))
                    actions.append(Action(self._at(day, 11.5, 18), ActionKind.OPEN, pack.code, pack.id))
            taken = min(pack.left, demand)
            pack.left -= taken
            demand -= taken
            truth.eaten[pack.habit] += taken
            at = self._at(day, 18, 22)
            if pack.id in self._used_at:  # used twice today: the second time comes after the first
                at = max(at, self._used_at[pack.id] + timedelta(minutes=1))
            self._used_at[pack.id] = at
            if pack.left <= 1e-9:
                self._packs.remove(pack)
                actions.append(Action(at, ActionKind.USE_UP, pack.code, pack.id, 0.0))
            else:
                actions.append(Action(at, ActionKind.POUR, pack.code, pack.id, pack.left))
        return actions

    def _new_pack(self, code: str, habit: str, expires: date) -> _Pack:
        self._pack_ids += 1
        self._had.add(habit)
        pack = _Pack(code, habit, 1.0, expires, id=self._pack_ids)
        self._packs.append(pack)
        return pack

    def _stock_fractions(self) -> dict[str, float]:
        stock: dict[str, float] = {}
        for pack in self._packs:
            stock[pack.habit] = stock.get(pack.habit, 0.0) + pack.left
        return stock

    def _drift(self) -> None:
        """Let tastes move: every rate drifts, and now and then a product gives way to another."""
        for habit in self._habits:
            habit.packs_per_day *= self._rng.lognormvariate(0, MONTHLY_DRIFT)
        if self._rng.random() < MONTHLY_SWAP:
            index = self._rng.randrange(len(self._habits))
            old = self._habits[index].product
            held = {h.product.code for h in self._habits}
            candidates = [p for p in self._catalog if p.category == old.category and p.code not in held]
            if candidates:
                self._habits[index] = self._habit(self._rng.choice(candidates))


def _poisson(rng: random.Random, mean: float) -> int:
    """Return a Poisson draw (Knuth's method; a normal approximation for large means)."""
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
