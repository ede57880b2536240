from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """`?page=N`, 100 rows a page by default (settings.REST_FRAMEWORK["PAGE_SIZE"]); `?page_size=` up to 1000."""

    page_size_query_param = "page_size"
    max_page_size = 1000
