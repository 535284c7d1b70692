/*
 * fakesa.c - an in-memory stand-in for the kernel's IPsec SA database, loaded into pluto with
 * LD_PRELOAD on kernels built without ESP (CONFIG_INET_ESP unset).
 *
 * On such a kernel pluto negotiates the IKE SA fine, but installing the Child SA fails
 * (XFRM_MSG_NEWSA answers ENOSYS or EPROTONOSUPPORT), so a tunnel never comes up. This library
 * watches the NETLINK_XFRM sockets pluto opens and answers the SA messages itself:
 *
 *   XFRM_MSG_ALLOCSPI       -> XFRM_MSG_NEWSA carrying a fresh SPI from the requested range
 *   XFRM_MSG_NEWSA, UPDSA   -> remembered; acknowledged with error 0
 *   XFRM_MSG_DELSA          -> forgotten; error 0, or ESRCH for an SA it does not hold
 *   XFRM_MSG_GETSA          -> XFRM_MSG_NEWSA with zero byte/packet counters, or ESRCH
 *   XFRM_MSG_FLUSHSA        -> everything forgotten; error 0
 *
 * Everything else, policies included, goes to the real kernel, so traps and `ip xfrm policy`
 * behave as on a real system. No packet is ever encrypted: the SAs exist only here.
 *
 * pluto (4.10 and 5.2) talks to the kernel synchronously on a blocking socket: write() or
 * send*() of one request, then recv*() until the reply with the same sequence number arrives.
 * A faked reply is therefore queued per socket and handed out by the next receive call; poll()
 * also reports such a socket readable, in case a caller waits before reading.
 *
 * Set FAKESA_LOG=<file> (or FAKESA_LOG=stderr) to get one line per intercepted message. Programs
 * that pluto starts do not inherit the library.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED_FD 4096
#define MAX_MSG 65536

struct reply {
	struct reply *next;
	size_t len;
	unsigned char data[];
};

struct fake_sa {
	struct fake_sa *next;
	xfrm_address_t daddr;
	xfrm_address_t saddr;
	uint32_t spi; /* network byte order, as on the wire */
	uint16_t family;
	uint8_t proto;
	uint8_t mode;
	uint32_t reqid;
	uint64_t add_time;
};

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static int (*real_socket)(int, int, int);
static int (*real_close)(int);
static int (*real_poll)(struct pollfd *, nfds_t, int);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char is_xfrm[MAX_TRACKED_FD];
static struct reply *queue[MAX_TRACKED_FD];
static struct fake_sa *sas;
static uint32_t rng_state;
static FILE *log_file;

static void resolve(void)
{
	real_write = dlsym(RTLD_NEXT, "write");
	real_send = dlsym(RTLD_NEXT, "send");
	real_sendto = dlsym(RTLD_NEXT, "sendto");
	real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
	real_read = dlsym(RTLD_NEXT, "read");
	real_recv = dlsym(RTLD_NEXT, "recv");
	real_recvfrom = dlsym(RTLD_NEXT, "recvfrom");
	real_recvmsg = dlsym(RTLD_NEXT, "recvmsg");
	real_socket = dlsym(RTLD_NEXT, "socket");
	real_close = dlsym(RTLD_NEXT, "close");
	real_poll = dlsym(RTLD_NEXT, "poll");
}

__attribute__((constructor)) static void fakesa_init(void)
{
	const char *path = getenv("FAKESA_LOG");

	resolve();
	rng_state = ((uint32_t)getpid() ^ (uint32_t)time(NULL) ^ 0x9e3779b9u) | 1;
	if (path != NULL && strcmp(path, "stderr") == 0) {
		log_file = stderr;
	} else if (path != NULL && *path != '\0') {
		log_file = fopen(path, "ae");
		if (log_file != NULL)
			setvbuf(log_file, NULL, _IOLBF, 0);
	}

	/* Only pluto itself: the updown scripts and tools it runs see the real kernel. */
	unsetenv("LD_PRELOAD");
	unsetenv("FAKESA_LOG");
}

static void note(const char *fmt, ...)
{
	va_list ap;

	if (log_file == NULL)
		return;
	fprintf(log_file, "fakesa[%d]: ", getpid());
	va_start(ap, fmt);
	vfprintf(log_file, fmt, ap);
	va_end(ap);
	fputc('\n', log_file);
}

static int tracked(int fd)
{
	return fd >= 0 && fd < MAX_TRACKED_FD && is_xfrm[fd];
}

static uint32_t next_random(void)
{
	/* xorshift32: SPIs only need to look plausible and not collide. */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static uint32_t own_portid(int fd)
{
	struct sockaddr_nl sa;
	socklen_t len = sizeof(sa);

	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		return 0;
	return sa.nl_pid;
}

static struct fake_sa **find_sa(const xfrm_address_t *daddr, uint32_t spi, uint16_t family,
				uint8_t proto)
{
	struct fake_sa **p;

	for (p = &sas; *p != NULL; p = &(*p)->next) {
		struct fake_sa *sa = *p;

		if (sa->spi == spi && sa->proto == proto && sa->family == family &&
		    memcmp(&sa->daddr, daddr, sizeof(*daddr)) == 0)
			return p;
	}
	return NULL;
}

static void remember_sa(const struct xfrm_usersa_info *info)
{
	struct fake_sa **p = find_sa(&info->id.daddr, info->id.spi, info->family, info->id.proto);
	struct fake_sa *sa;

	if (p != NULL) {
		sa = *p;
	} else {
		sa = calloc(1, sizeof(*sa));
		if (sa == NULL)
			return;
		sa->next = sas;
		sas = sa;
		sa->daddr = info->id.daddr;
		sa->spi = info->id.spi;
		sa->family = info->family;
		sa->proto = info->id.proto;
	}
	sa->saddr = info->saddr;
	sa->mode = info->mode;
	sa->reqid = info->reqid;
	sa->add_time = (uint64_t)time(NULL);
}

static void enqueue(int fd, const void *data, size_t len)
{
	struct reply *r = malloc(sizeof(*r) + len);
	struct reply **tail;

	if (r == NULL)
		return;
	r->next = NULL;
	r->len = len;
	memcpy(r->data, data, len);
	for (tail = &queue[fd]; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
}

static void drop_queue(int fd)
{
	while (queue[fd] != NULL) {
		struct reply *r = queue[fd];

		queue[fd] = r->next;
		free(r);
	}
}

/* An NLMSG_ERROR answer, the way the kernel sends an ACK (error 0) or a failure. */
static void queue_status(int fd, const struct nlmsghdr *req, int error)
{
	struct {
		struct nlmsghdr hdr;
		struct nlmsgerr err;
	} msg;

	if (error == 0 && !(req->nlmsg_flags & NLM_F_ACK))
		return;
	memset(&msg, 0, sizeof(msg));
	msg.hdr.nlmsg_len = sizeof(msg);
	msg.hdr.nlmsg_type = NLMSG_ERROR;
	msg.hdr.nlmsg_flags = NLM_F_CAPPED;
	msg.hdr.nlmsg_seq = req->nlmsg_seq;
	msg.hdr.nlmsg_pid = own_portid(fd);
	msg.err.error = -error;
	msg.err.msg = *req;
	enqueue(fd, &msg, sizeof(msg));
}

static void queue_sa_info(int fd, const struct nlmsghdr *req, const struct xfrm_usersa_info *info)
{
	struct {
		struct nlmsghdr hdr;
		struct xfrm_usersa_info info;
	} msg;

	memset(&msg, 0, sizeof(msg));
	msg.hdr.nlmsg_len = sizeof(msg);
	msg.hdr.nlmsg_type = XFRM_MSG_NEWSA;
	msg.hdr.nlmsg_seq = req->nlmsg_seq;
	msg.hdr.nlmsg_pid = own_portid(fd);
	msg.info = *info;
	enqueue(fd, &msg, sizeof(msg));
}

static int payload_fits(const struct nlmsghdr *nlh, size_t size)
{
	return nlh->nlmsg_len >= NLMSG_LENGTH(size);
}

static void answer_allocspi(int fd, const struct nlmsghdr *nlh)
{
	const struct xfrm_userspi_info *req = NLMSG_DATA(nlh);
	struct xfrm_usersa_info info = req->info;
	uint32_t lo = req->min, hi = req->max, spi;
	int tries = 0;

	/* SPIs below 256 are reserved (RFC 4303); an empty range means "any". */
	if (lo < 0x100)
		lo = 0x100;
	if (hi < lo)
		hi = 0xffffffffu;

	/* Pick at random in the requested range, avoiding SPIs already handed out. */
	do {
		spi = lo == hi ? lo : lo + next_random() % (hi - lo + 1);
	} while (find_sa(&info.id.daddr, htonl(spi), info.family, info.id.proto) != NULL &&
		 ++tries < 64);

	info.id.spi = htonl(spi);
	info.lft.soft_byte_limit = XFRM_INF;
	info.lft.hard_byte_limit = XFRM_INF;
	info.lft.soft_packet_limit = XFRM_INF;
	info.lft.hard_packet_limit = XFRM_INF;
	remember_sa(&info);
	queue_sa_info(fd, nlh, &info);
	note("ALLOCSPI proto %u spi 0x%08x", info.id.proto, spi);
}

static void answer_getsa(int fd, const struct nlmsghdr *nlh)
{
	const struct xfrm_usersa_id *id = NLMSG_DATA(nlh);
	struct fake_sa **p = find_sa(&id->daddr, id->spi, id->family, id->proto);
	struct xfrm_usersa_info info;

	if (p == NULL) {
		note("GETSA spi 0x%08x: no such SA", ntohl(id->spi));
		queue_status(fd, nlh, ESRCH);
		return;
	}

	/* Nothing ever flows through a fake SA: the counters stay at zero. */
	memset(&info, 0, sizeof(info));
	info.id.daddr = (*p)->daddr;
	info.id.spi = (*p)->spi;
	info.id.proto = (*p)->proto;
	info.saddr = (*p)->saddr;
	info.family = (*p)->family;
	info.mode = (*p)->mode;
	info.reqid = (*p)->reqid;
	info.lft.soft_byte_limit = XFRM_INF;
	info.lft.hard_byte_limit = XFRM_INF;
	info.lft.soft_packet_limit = XFRM_INF;
	info.lft.hard_packet_limit = XFRM_INF;
	info.curlft.add_time = (*p)->add_time;
	queue_sa_info(fd, nlh, &info);
	note("GETSA spi 0x%08x", ntohl(id->spi));
}

static void answer_delsa(int fd, const struct nlmsghdr *nlh)
{
	const struct xfrm_usersa_id *id = NLMSG_DATA(nlh);
	struct fake_sa **p = find_sa(&id->daddr, id->spi, id->family, id->proto);
	struct fake_sa *gone;

	if (p == NULL) {
		note("DELSA spi 0x%08x: no such SA", ntohl(id->spi));
		queue_status(fd, nlh, ESRCH);
		return;
	}
	gone = *p;
	*p = gone->next;
	free(gone);
	queue_status(fd, nlh, 0);
	note("DELSA spi 0x%08x", ntohl(id->spi));
}

static void answer_flushsa(int fd, const struct nlmsghdr *nlh)
{
	while (sas != NULL) {
		struct fake_sa *gone = sas;

		sas = gone->next;
		free(gone);
	}
	queue_status(fd, nlh, 0);
	note("FLUSHSA");
}

/*
 * Answers one outgoing message if it is an SA message. Returns 1 when answered here (the caller
 * reports the whole buffer as sent), 0 when the kernel should see it.
 */
static int intercept(int fd, const void *buf, size_t len)
{
	const struct nlmsghdr *nlh = buf;

	if (len < sizeof(*nlh) || nlh->nlmsg_len < sizeof(*nlh) || nlh->nlmsg_len > len)
		return 0;

	/* pluto sends one request per call; a batch is left to the kernel untouched. */
	if (NLMSG_ALIGN(nlh->nlmsg_len) < len)
		return 0;

	switch (nlh->nlmsg_type) {
	case XFRM_MSG_ALLOCSPI:
		if (!payload_fits(nlh, sizeof(struct xfrm_userspi_info)))
			return 0;
		answer_allocspi(fd, nlh);
		return 1;
	case XFRM_MSG_NEWSA:
	case XFRM_MSG_UPDSA: {
		const struct xfrm_usersa_info *info = NLMSG_DATA(nlh);

		if (!payload_fits(nlh, sizeof(*info)))
			return 0;
		remember_sa(info);
		queue_status(fd, nlh, 0);
		note("%s proto %u spi 0x%08x reqid %u",
		     nlh->nlmsg_type == XFRM_MSG_NEWSA ? "NEWSA" : "UPDSA", info->id.proto,
		     ntohl(info->id.spi), info->reqid);
		return 1;
	}
	case XFRM_MSG_DELSA:
		if (!payload_fits(nlh, sizeof(struct xfrm_usersa_id)))
			return 0;
		answer_delsa(fd, nlh);
		return 1;
	case XFRM_MSG_GETSA:
		if ((nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP ||
		    !payload_fits(nlh, sizeof(struct xfrm_usersa_id)))
			return 0;
		answer_getsa(fd, nlh);
		return 1;
	case XFRM_MSG_FLUSHSA:
		answer_flushsa(fd, nlh);
		return 1;
	default:
		return 0;
	}
}

/* Copies a queued reply out like a datagram receive would; -1 when none is queued. */
static ssize_t take_reply(int fd, const struct iovec *iov, size_t iovcnt, int flags, int *msg_flags,
			  struct sockaddr *from, socklen_t *fromlen)
{
	struct reply *r = queue[fd];
	size_t copied = 0, i;

	if (r == NULL)
		return -1;

	for (i = 0; i < iovcnt && copied < r->len; i++) {
		size_t n = r->len - copied < iov[i].iov_len ? r->len - copied : iov[i].iov_len;

		memcpy(iov[i].iov_base, r->data + copied, n);
		copied += n;
	}
	if (msg_flags != NULL)
		*msg_flags = copied < r->len ? MSG_TRUNC : 0;

	if (from != NULL && fromlen != NULL) {
		struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
		socklen_t n = *fromlen < sizeof(kernel) ? *fromlen : sizeof(kernel);

		memcpy(from, &kernel, n);
		*fromlen = sizeof(kernel);
	}

	ssize_t result = (flags & MSG_TRUNC) ? (ssize_t)r->len : (ssize_t)copied;

	if (!(flags & MSG_PEEK)) {
		queue[fd] = r->next;
		free(r);
	}
	return result;
}

static int try_intercept(int fd, const void *buf, size_t len)
{
	int answered;

	if (!tracked(fd))
		return 0;
	pthread_mutex_lock(&lock);
	answered = intercept(fd, buf, len);
	pthread_mutex_unlock(&lock);
	return answered;
}

static ssize_t try_take(int fd, const struct iovec *iov, size_t iovcnt, int flags, int *msg_flags,
			struct sockaddr *from, socklen_t *fromlen)
{
	ssize_t n;

	if (!tracked(fd))
		return -1;
	pthread_mutex_lock(&lock);
	n = take_reply(fd, iov, iovcnt, flags, msg_flags, from, fromlen);
	pthread_mutex_unlock(&lock);
	return n;
}

int socket(int domain, int type, int protocol)
{
	int fd;

	if (real_socket == NULL)
		resolve();
	fd = real_socket(domain, type, protocol);
	if (fd >= 0 && fd < MAX_TRACKED_FD) {
		pthread_mutex_lock(&lock);
		drop_queue(fd);
		is_xfrm[fd] = domain == AF_NETLINK && protocol == NETLINK_XFRM;
		pthread_mutex_unlock(&lock);
		if (is_xfrm[fd])
			note("tracking NETLINK_XFRM socket fd %d", fd);
	}
	return fd;
}

int close(int fd)
{
	if (real_close == NULL)
		resolve();
	if (tracked(fd)) {
		pthread_mutex_lock(&lock);
		is_xfrm[fd] = 0;
		drop_queue(fd);
		pthread_mutex_unlock(&lock);
	}
	return real_close(fd);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	if (real_write == NULL)
		resolve();
	if (try_intercept(fd, buf, len))
		return (ssize_t)len;
	return real_write(fd, buf, len);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	if (real_send == NULL)
		resolve();
	if (try_intercept(fd, buf, len))
		return (ssize_t)len;
	return real_send(fd, buf, len, flags);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
	       socklen_t tolen)
{
	const struct sockaddr_nl *dest = (const struct sockaddr_nl *)to;

	if (real_sendto == NULL)
		resolve();

	/* Only requests addressed to the kernel (port 0) are the kernel's to answer. */
	if ((to == NULL || (tolen >= sizeof(*dest) && dest->nl_pid == 0)) &&
	    try_intercept(fd, buf, len))
		return (ssize_t)len;
	return real_sendto(fd, buf, len, flags, to, tolen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	static unsigned char flat[MAX_MSG];
	size_t len = 0, i;

	if (real_sendmsg == NULL)
		resolve();
	if (!tracked(fd) || msg->msg_iovlen == 0 ||
	    (msg->msg_name != NULL && ((const struct sockaddr_nl *)msg->msg_name)->nl_pid != 0))
		return real_sendmsg(fd, msg, flags);

	/* Gather the pieces so the message can be inspected as one buffer. */
	pthread_mutex_lock(&lock);
	for (i = 0; i < msg->msg_iovlen; i++) {
		if (len + msg->msg_iov[i].iov_len > sizeof(flat)) {
			pthread_mutex_unlock(&lock);
			return real_sendmsg(fd, msg, flags);
		}
		memcpy(flat + len, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
		len += msg->msg_iov[i].iov_len;
	}
	int answered = intercept(fd, flat, len);

	pthread_mutex_unlock(&lock);
	if (answered)
		return (ssize_t)len;
	return real_sendmsg(fd, msg, flags);
}

ssize_t read(int fd, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	ssize_t n;

	if (real_read == NULL)
		resolve();
	n = try_take(fd, &iov, 1, 0, NULL, NULL, NULL);
	if (n >= 0)
		return n;
	return real_read(fd, buf, len);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	ssize_t n;

	if (real_recv == NULL)
		resolve();
	n = try_take(fd, &iov, 1, flags, NULL, NULL, NULL);
	if (n >= 0)
		return n;
	return real_recv(fd, buf, len, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
		 socklen_t *fromlen)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	ssize_t n;

	if (real_recvfrom == NULL)
		resolve();
	n = try_take(fd, &iov, 1, flags, NULL, from, fromlen);
	if (n >= 0)
		return n;
	return real_recvfrom(fd, buf, len, flags, from, fromlen);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	socklen_t namelen = msg->msg_namelen;
	int msg_flags = 0;
	ssize_t n;

	if (real_recvmsg == NULL)
		resolve();
	n = try_take(fd, msg->msg_iov, msg->msg_iovlen, flags, &msg_flags, msg->msg_name,
		     msg->msg_name != NULL ? &namelen : NULL);
	if (n < 0)
		return real_recvmsg(fd, msg, flags);
	if (msg->msg_name != NULL)
		msg->msg_namelen = namelen;
	msg->msg_controllen = 0;
	msg->msg_flags = msg_flags;
	return n;
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	nfds_t i, ready = 0;
	int n;

	if (real_poll == NULL)
		resolve();

	/* A socket holding a faked reply is readable even though the kernel has nothing for it. */
	pthread_mutex_lock(&lock);
	for (i = 0; i < nfds; i++)
		if (tracked(fds[i].fd) && queue[fds[i].fd] != NULL && (fds[i].events & POLLIN))
			ready++;
	pthread_mutex_unlock(&lock);
	if (ready == 0)
		return real_poll(fds, nfds, timeout);

	n = real_poll(fds, nfds, 0);
	if (n < 0)
		return n;
	pthread_mutex_lock(&lock);
	for (i = 0; i < nfds; i++) {
		if (tracked(fds[i].fd) && queue[fds[i].fd] != NULL && (fds[i].events & POLLIN)) {
			if (fds[i].revents == 0)
				n++;
			fds[i].revents |= POLLIN;
		}
	}
	pthread_mutex_unlock(&lock);
	return n;
}
